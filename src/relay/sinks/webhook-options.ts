import { InvalidOptionError } from '../../errors.js';
import { integerOption } from '../../util/integer-option.js';
import type { Destination } from '../template.js';
import { HTTP_TOKEN, isPlainHeaderValue } from './webhook-header-values.js';
import { DEFAULT_SIGNATURE_HEADER, SINK_OWNED_HEADERS } from './webhook-headers.js';
import { isTerminalByDefault } from './webhook-response.js';
import { webhookSigner } from './webhook-signature.js';
import { compileWebhookUrl, fixedWebhookTarget, type WebhookTarget, type WebhookTargetOf } from './webhook-url.js';

export interface WebhookSinkOptions {
  /**
   * Where each row is sent: an http(s) URL, a template over the row (`https://hooks.example/{queue}`;
   * filled-in values are percent-encoded) or a function (message) => string. Credentials in the URL
   * (`https://user:password@host/…`) go out as `Authorization: Basic`, never in errors.
   */
  readonly url: Destination;
  /** @default 'POST' */
  readonly method?: 'POST' | 'PUT' | 'PATCH';
  /** Sent with every request; win over a row's headers of the same name. Values never appear in errors. */
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * Signs every request (HMAC-SHA256, Stripe's scheme: architecture/relay.md). Several secrets sign
   * with each (one `v1=` apiece), for rotating a secret without a moment where receivers reject.
   * Never logged, never in an error.
   */
  readonly secret?: string | Buffer | readonly (string | Buffer)[];
  /** @default 'X-Txoutbox-Signature' */
  readonly signatureHeader?: string;
  /**
   * Per request, from the moment it has a socket: connecting, sending and the answer's status line
   * (and a refusal's excerpt). Not the wait for a free socket behind `maxSockets`. Milliseconds.
   * @default 10000
   */
  readonly timeoutMs?: number;
  /**
   * Statuses that refuse the row for good (SinkRefusedError: the DLQ with the status). Every other
   * non-2xx status is retried. A list of statuses (300–599), or a predicate over the status.
   * @default every 4xx but 401, 403, 404, 405, 421 (they concern the endpoint), 408, 409, 425 and 429;
   * a 3xx is retried (never followed), as it concerns the endpoint too
   */
  readonly terminalStatuses?: readonly number[] | ((status: number) => boolean);
  /** Sockets per origin (keep-alive); more concurrent sends wait for one. @default 64 */
  readonly maxSockets?: number;
  /**
   * A URL whose 2xx answer to a GET means the receiver is up, for `check()` (ping, /readyz). Without
   * it the sink has no check(), and counts as up while its sends succeed.
   */
  readonly healthUrl?: string;
}

export interface ResolvedWebhookOptions {
  readonly targetOf: WebhookTargetOf;
  readonly method: string;
  readonly fixedHeaders: ReadonlyMap<string, string>;
  readonly signatureHeader: string;
  readonly sign: ((body: Buffer) => string) | undefined;
  readonly timeoutMs: number;
  readonly isTerminal: (status: number) => boolean;
  readonly maxSockets: number;
  readonly health: WebhookTarget | undefined;
  /** Strings masked in any text the sink puts into an error (secrets, header values, credentials). */
  readonly secrets: readonly string[];
}

const KNOWN = [
  'url',
  'method',
  'headers',
  'secret',
  'signatureHeader',
  'timeoutMs',
  'terminalStatuses',
  'maxSockets',
  'healthUrl',
] as const;
const METHODS = ['POST', 'PUT', 'PATCH'] as const;
/** Static header names whose values are treated as secrets (masked if a receiver echoes them). */
const SECRET_HEADER = /auth|token|secret|key|cookie|signature|password|session/i;

export function resolveWebhookOptions(options: WebhookSinkOptions): ResolvedWebhookOptions {
  if ((options as unknown) === null || typeof options !== 'object') {
    throw new InvalidOptionError({ option: 'webhookSink', value: options, expected: 'an options object with a url' });
  }
  for (const key of Object.keys(options)) {
    if ((KNOWN as readonly string[]).includes(key)) continue;
    // Redacted: a misspelt `secert` holds the secret.
    throw new InvalidOptionError({
      option: key,
      value: undefined,
      redact: true,
      expected: `one of the webhookSink options (${KNOWN.join(', ')})`,
    });
  }
  const secrets: string[] = [];
  const signatureHeader = headerName('signatureHeader', options.signatureHeader ?? DEFAULT_SIGNATURE_HEADER);
  const secretList = secretsOf(options.secret);
  if (secretList === undefined && options.signatureHeader !== undefined) {
    throw new InvalidOptionError({
      option: 'signatureHeader',
      value: options.signatureHeader,
      expected: 'to be set together with secret',
      fix: 'Set secret too, or leave signatureHeader out: without a secret nothing is signed.',
    });
  }
  for (const secret of secretList ?? []) secrets.push(secret.toString('utf8'));
  const health = options.healthUrl === undefined ? undefined : fixedWebhookTarget('healthUrl', options.healthUrl, secrets);
  const fixedHeaders = fixedHeadersOf(options.headers, signatureHeader, secrets);
  const credentials = secrets.length;
  const targetOf = compileWebhookUrl('url', options.url, secrets);
  if (fixedHeaders.has('authorization') && secrets.length > credentials) {
    throw new InvalidOptionError({
      option: 'headers["authorization"]',
      value: undefined,
      redact: true,
      expected: 'no Authorization header when the url carries credentials (user:password@)',
      fix: 'Authenticate one way: remove the header or the credentials in the url.',
    });
  }
  return {
    targetOf,
    method: methodOf(options.method),
    fixedHeaders,
    signatureHeader,
    sign: secretList === undefined ? undefined : webhookSigner(secretList),
    timeoutMs: integerOption('timeoutMs', options.timeoutMs, 1, 600_000, 10_000),
    isTerminal: terminalOf(options.terminalStatuses),
    maxSockets: integerOption('maxSockets', options.maxSockets, 1, 1024, 64),
    health,
    secrets: secrets.filter((s) => s !== ''),
  };
}

function methodOf(method: unknown): string {
  if (method === undefined) return 'POST';
  if (typeof method === 'string' && (METHODS as readonly string[]).includes(method)) return method;
  throw new InvalidOptionError({ option: 'method', value: method, expected: `one of ${METHODS.join(', ')}` });
}

function secretsOf(secret: unknown): Buffer[] | undefined {
  if (secret === undefined) return undefined;
  const list: unknown[] = Array.isArray(secret) ? secret : [secret];
  const invalid = new InvalidOptionError({
    option: 'secret',
    value: secret,
    redact: true,
    expected: 'a non-empty string or Buffer, or a non-empty list of them',
    fix: 'Pass the shared secret (from your secret store, not source code), or leave secret out to send unsigned.',
  });
  if (list.length === 0) throw invalid;
  return list.map((one) => {
    if (typeof one === 'string' && one !== '') return Buffer.from(one, 'utf8');
    if (Buffer.isBuffer(one) && one.length > 0) return Buffer.from(one);
    throw invalid;
  });
}

function headerName(option: string, name: unknown): string {
  if (
    typeof name !== 'string' ||
    !HTTP_TOKEN.test(name) ||
    SINK_OWNED_HEADERS.has(name.toLowerCase()) ||
    name.toLowerCase() === 'content-type'
  ) {
    throw new InvalidOptionError({
      option,
      value: name,
      expected: "an HTTP header name (letters, digits and !#$%&'*+-.^_`|~) that HTTP or the sink does not set itself",
    });
  }
  return name.toLowerCase();
}

function fixedHeadersOf(headers: unknown, signatureHeader: string, secrets: string[]): Map<string, string> {
  const fixed = new Map<string, string>();
  if (headers === undefined) return fixed;
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) {
    throw new InvalidOptionError({
      option: 'headers',
      value: headers,
      redact: true,
      expected: 'an object mapping header names to strings',
    });
  }
  for (const [name, value] of Object.entries(headers)) {
    const option = `headers[${JSON.stringify(name)}]`;
    const lower = headerName(option, name);
    if (lower === signatureHeader) {
      throw new InvalidOptionError({ option, value: name, expected: 'a header other than the signature header' });
    }
    if (typeof value !== 'string' || !isPlainHeaderValue(value)) {
      throw new InvalidOptionError({
        option,
        value,
        redact: true,
        expected: 'a string of visible ASCII characters and inner spaces',
        fix: 'Encode other characters yourself (encodeURIComponent, base64).',
      });
    }
    if (fixed.has(lower))
      throw new InvalidOptionError({ option, value: name, expected: 'a header named once, whatever its case' });
    fixed.set(lower, value);
    if (SECRET_HEADER.test(lower)) secrets.push(value);
  }
  return fixed;
}

function terminalOf(option: unknown): (status: number) => boolean {
  if (option === undefined) return isTerminalByDefault;
  if (typeof option === 'function') return (status) => (option as (status: number) => unknown)(status) === true;
  const valid =
    Array.isArray(option) &&
    option.every((status) => Number.isInteger(status) && (status as number) >= 300 && (status as number) <= 599);
  if (!valid) {
    throw new InvalidOptionError({
      option: 'terminalStatuses',
      value: option,
      expected: 'a list of HTTP statuses from 300 to 599, or a function (status) => boolean',
      fix: 'A 2xx always counts as delivered; list the statuses that should end the row in the DLQ.',
    });
  }
  const set = new Set(option as number[]);
  return (status) => set.has(status);
}
