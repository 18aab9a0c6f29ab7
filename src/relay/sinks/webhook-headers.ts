import type { OutgoingHttpHeaders } from 'node:http';

import type { RelayMessage } from '../sink.js';
import { HTTP_TOKEN, isPlainHeaderValue, percentEncode } from './webhook-header-values.js';

/** The row's stable id, for receivers that deduplicate (the IETF Idempotency-Key draft, Stripe's API). */
export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key';
export const MESSAGE_ID_HEADER = 'x-txoutbox-message-id';
/** Names, comma-separated, of headers whose values were percent-encoded (UTF-8) to travel intact. */
export const ENCODED_HEADERS_HEADER = 'x-txoutbox-encoded-headers';
export const DEFAULT_SIGNATURE_HEADER = 'x-txoutbox-signature';
const USER_AGENT = 'txoutbox-relay';

/**
 * Headers HTTP itself or the sink sets. Taken from a row, `content-length` or `transfer-encoding`
 * would break the request's framing and `connection` the socket reuse; the sink's own would let a
 * row forge its id. Never taken from a row, never accepted in the `headers` option.
 */
export const SINK_OWNED_HEADERS: ReadonlySet<string> = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'proxy-connection',
  'upgrade',
  'te',
  'trailer',
  'expect',
  IDEMPOTENCY_KEY_HEADER,
  MESSAGE_ID_HEADER,
  ENCODED_HEADERS_HEADER,
]);

export interface HeaderPlan {
  /** The `headers` option, names in lower case: they win over a row's headers of the same name. */
  readonly fixed: ReadonlyMap<string, string>;
  /** Lower case. */
  readonly signatureHeader: string;
  /** The signature header's value for a body, when a secret is set. */
  readonly sign: ((body: Buffer) => string) | undefined;
}

/**
 * The request's headers for one row: the row's own (a name HTTP cannot carry is skipped), the
 * correlation id, the `headers` option, the URL's credentials, the row's ids and the signature.
 * A value that would not arrive as stored is percent-encoded and named in
 * `x-txoutbox-encoded-headers`; names are lower case, and two row headers differing only in case
 * travel as two field lines of one name.
 */
export function webhookHeaders(message: RelayMessage, authorization: string | undefined, plan: HeaderPlan): OutgoingHttpHeaders {
  const values = new Map<string, string[]>();
  for (const [name, value] of Object.entries(message.headers)) {
    const lower = name.toLowerCase();
    if (!HTTP_TOKEN.test(name) || SINK_OWNED_HEADERS.has(lower) || lower === plan.signatureHeader) continue;
    const seen = values.get(lower);
    if (seen === undefined) values.set(lower, [value]);
    else seen.push(value);
  }
  if (!values.has('content-type')) values.set('content-type', ['application/octet-stream']);
  if (!values.has('correlation-id')) values.set('correlation-id', [message.correlationId]);
  for (const [name, value] of plan.fixed) values.set(name, [value]);
  if (authorization !== undefined) values.set('authorization', [authorization]);
  values.set(IDEMPOTENCY_KEY_HEADER, [message.messageId]);
  values.set(MESSAGE_ID_HEADER, [message.messageId]);

  const headers: OutgoingHttpHeaders = { 'user-agent': USER_AGENT };
  const encoded: string[] = [];
  for (const [name, list] of values) {
    if (list.every(isPlainHeaderValue)) headers[name] = list.length === 1 ? list[0] : list;
    else {
      // All of a name's values or none, so a receiver decodes every value of a listed name.
      encoded.push(name);
      headers[name] = list.length === 1 ? percentEncode(list[0] ?? '') : list.map(percentEncode);
    }
  }
  if (encoded.length > 0) headers[ENCODED_HEADERS_HEADER] = encoded.join(', ');
  headers['content-length'] = message.payload.length;
  if (plan.sign !== undefined) headers[plan.signatureHeader] = plan.sign(message.payload);
  return headers;
}

/**
 * The health check's headers: the `headers` option and the user agent, as every send carries them
 * (a gateway that wants its API key on every route answered the check 401, so /readyz stayed down
 * while sends passed), and the health URL's own credentials over them.
 */
export function healthHeaders(authorization: string | undefined, fixed: ReadonlyMap<string, string>): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = { 'user-agent': USER_AGENT };
  for (const [name, value] of fixed) headers[name] = isPlainHeaderValue(value) ? value : percentEncode(value);
  if (authorization !== undefined) headers.authorization = authorization;
  return headers;
}
