import { randomUUID } from 'node:crypto';

import { InvalidOptionError } from '../errors.js';
import { CONTENT_TYPE_HEADER, CONTENT_TYPES, CORRELATION_ID_HEADER, type Headers } from './headers.js';

/** Checks that user headers are a flat map of strings. `option` names the argument in errors. */
export function validateHeaders(option: string, headers: unknown): Headers {
  if (headers === undefined) return {};
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) {
    throw new InvalidOptionError({ option, value: headers, expected: 'an object mapping header names to strings' });
  }
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value !== 'string') {
      throw new InvalidOptionError({
        option: `${option}[${JSON.stringify(name)}]`,
        value,
        expected: 'a string',
        fix: 'Header values are strings; encode other values yourself (String(x) or JSON.stringify(x)).',
      });
    }
  }
  return headers as Headers;
}

/**
 * The row's headers: the user's, plus the envelope's content type and correlation id.
 * A user content type may only relabel bytes (say, application/protobuf); on text or JSON it
 * would make the subscriber decode the body wrongly, so a different one is an error.
 */
export function buildHeaders(args: {
  readonly headers: Headers;
  readonly contentType: string;
  readonly correlationId: string | undefined;
}): Record<string, string> {
  const result: Record<string, string> = { ...args.headers };
  const userContentType = args.headers[CONTENT_TYPE_HEADER];
  if (userContentType === undefined) {
    result[CONTENT_TYPE_HEADER] = args.contentType;
  } else if (userContentType !== args.contentType && args.contentType !== CONTENT_TYPES.octetStream) {
    throw new InvalidOptionError({
      option: `headers["${CONTENT_TYPE_HEADER}"]`,
      value: userContentType,
      expected: `"${args.contentType}" for this body, or no content-type header`,
      fix: 'The content type is derived from the body; to label a body yourself, pass it as a Buffer.',
    });
  }
  const headerCorrelationId = args.headers[CORRELATION_ID_HEADER];
  if (args.correlationId !== undefined && headerCorrelationId !== undefined && args.correlationId !== headerCorrelationId) {
    throw new InvalidOptionError({
      option: 'correlationId',
      value: args.correlationId,
      expected: `the same value as headers["${CORRELATION_ID_HEADER}"] (${JSON.stringify(headerCorrelationId)})`,
      fix: 'Pass the correlation id one way, not both.',
    });
  }
  result[CORRELATION_ID_HEADER] = args.correlationId ?? headerCorrelationId ?? randomUUID();
  return result;
}

/**
 * A row's headers plus those a publish middleware added (a tracing middleware's `traceparent`).
 * They win over the caller's own headers of the same name but never over the envelope's
 * content type and correlation id, which the subscriber relies on to decode and correlate.
 */
export function withInjectedHeaders(row: Readonly<Record<string, string>>, injected: Readonly<Record<string, string>>): string {
  return headersWithInjected(injected)(row);
}

/**
 * withInjectedHeaders for many rows: the injected headers are checked once (a batch's rows share
 * them), and rows get the cheapest JSON when there are none.
 */
export function headersWithInjected(
  injected: Readonly<Record<string, string>>,
): (row: Readonly<Record<string, string>>) => string {
  const extra = validateHeaders('headers injected by a publish middleware', injected);
  if (Object.keys(extra).length === 0) return headersJson;
  return (row) =>
    headersJson({
      ...row,
      ...extra,
      [CONTENT_TYPE_HEADER]: row[CONTENT_TYPE_HEADER],
      [CORRELATION_ID_HEADER]: row[CORRELATION_ID_HEADER],
    });
}

/** Printable ASCII but `"` and `\`: what JSON.stringify writes between quotes as it is. */
const VERBATIM = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function jsonString(text: string): string {
  return VERBATIM.test(text) ? `"${text}"` : JSON.stringify(text);
}

/**
 * JSON.stringify of a flat map of strings (headers are validated to be one), the same text, at
 * about half its cost on the publish path: JSON.stringify of a small object was a sixth of
 * publishBatch's Node CPU per message (issue 18; BENCHMARKS.md, "Issue 18: batch publish").
 */
export function headersJson(headers: Readonly<Record<string, string | undefined>>): string {
  let json = '';
  for (const name of Object.keys(headers)) {
    const value = headers[name];
    // JSON.stringify leaves out a key whose value is undefined.
    if (value !== undefined) json += `${json === '' ? '{' : ','}${jsonString(name)}:${jsonString(value)}`;
  }
  return json === '' ? '{}' : `${json}}`;
}
