import { randomUUID } from 'node:crypto';

import { InvalidOptionError } from '../errors.js';
import { CAUSATION_ID_HEADER, CONTENT_TYPE_HEADER, CONTENT_TYPES, CORRELATION_ID_HEADER, type Headers } from './headers.js';
import { unstorableIn } from './storable-text.js';

/** A plain object: a literal, `Object.create(null)`, JSON; not a Map, a fetch Headers, an array or a class instance. */
function isPlainObject(value: object): boolean {
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/**
 * Checks that user headers are a flat map of strings, and returns a copy: the call stores what it
 * was given, not what the caller's object holds once the body was encoded and the middlewares ran
 * (a batch read it then: a change made meanwhile was stored unchecked). A Map or a fetch `Headers`
 * has no own entries and read as none, silently: refused. `option` names the argument in errors.
 */
export function validateHeaders(option: string, headers: unknown): Headers {
  if (headers === undefined) return {};
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers) || !isPlainObject(headers)) {
    throw new InvalidOptionError({
      option,
      value: headers,
      expected: 'a plain object mapping header names to strings',
      fix: 'Pass an object literal; from a Map or a fetch Headers, pass Object.fromEntries(headers).',
    });
  }
  const copy: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const at = `${option}[${JSON.stringify(name)}]`;
    if (typeof value !== 'string') {
      throw new InvalidOptionError({
        option: at,
        value,
        expected: 'a string',
        fix: 'Header values are strings; encode other values yourself (String(x) or JSON.stringify(x)).',
      });
    }
    // The headers are stored as jsonb, which refuses a NUL inside the caller's transaction.
    const why = unstorableIn(name) ?? unstorableIn(value);
    if (why !== undefined)
      throw new InvalidOptionError({
        option: at,
        value,
        expected: `a name and a value without ${why}`,
        fix: 'Remove or replace that character.',
      });
    const stored = envelopeName(copy, option, name, value);
    // A `__proto__` key (from JSON.parse) is an own property there; assigned, it would set the copy's prototype instead.
    if (stored === '__proto__')
      Object.defineProperty(copy, stored, { value, enumerable: true, writable: true, configurable: true });
    else copy[stored] = value;
  }
  return copy;
}

/** The header names the envelope reads, in the case it writes them. */
const ENVELOPE_NAMES = new Set([CONTENT_TYPE_HEADER, CORRELATION_ID_HEADER, CAUSATION_ID_HEADER]);

/**
 * A header named like one the envelope reads, in another case (`Content-Type`, as an HTTP
 * framework spells it), is that header: stored under the envelope's name, so the content-type and
 * correlation checks see it. Kept as given, it passed them and was stored beside the envelope's own
 * (jsonb keeps both), and a receiver reading the first of the two got the caller's (review). The
 * same header twice in two cases with two values is refused.
 */
function envelopeName(copy: Readonly<Record<string, string>>, option: string, name: string, value: string): string {
  const lower = name.toLowerCase();
  if (!ENVELOPE_NAMES.has(lower)) return name;
  const earlier = copy[lower];
  if (earlier !== undefined && earlier !== value) {
    throw new InvalidOptionError({
      option: `${option}[${JSON.stringify(name)}]`,
      value,
      expected: `the same value as ${option}[${JSON.stringify(lower)}] (${JSON.stringify(earlier)}), or only one of the two`,
      fix: `Header names are case-insensitive: keep one ${lower} header.`,
    });
  }
  return lower;
}

/**
 * A row's content type. A user content type may only relabel bytes (say, application/protobuf); on
 * text or JSON it would make the subscriber decode the body wrongly, so a different one is an error.
 */
export function rowContentType(headers: Headers, bodyContentType: string, batchIndex?: number): string {
  const userContentType = headers[CONTENT_TYPE_HEADER];
  if (userContentType === undefined) return bodyContentType;
  if (userContentType !== bodyContentType && bodyContentType !== CONTENT_TYPES.octetStream) {
    throw new InvalidOptionError({
      option: `headers["${CONTENT_TYPE_HEADER}"]`,
      value: userContentType,
      expected: `"${bodyContentType}" for ${batchIndex === undefined ? 'this body' : `bodies[${batchIndex}]`}, or no content-type header`,
      fix: 'The content type is derived from the body; to label a body yourself, pass it as a Buffer.',
    });
  }
  return userContentType;
}

/** The correlation id the caller gave (option or header, not two different ones), or undefined: each row draws its own. */
export function sharedCorrelationId(headers: Headers, correlationId: string | undefined): string | undefined {
  const headerCorrelationId = headers[CORRELATION_ID_HEADER];
  if (correlationId !== undefined && headerCorrelationId !== undefined && correlationId !== headerCorrelationId) {
    throw new InvalidOptionError({
      option: 'correlationId',
      value: correlationId,
      expected: `the same value as headers["${CORRELATION_ID_HEADER}"] (${JSON.stringify(headerCorrelationId)})`,
      fix: 'Pass the correlation id one way, not both.',
    });
  }
  return correlationId ?? headerCorrelationId;
}

/** The row's headers: the user's, plus the envelope's content type (rowContentType) and correlation id. */
export function buildHeaders(args: {
  readonly headers: Headers;
  readonly contentType: string;
  readonly correlationId: string | undefined;
}): Record<string, string> {
  const result: Record<string, string> = { ...args.headers };
  result[CONTENT_TYPE_HEADER] = rowContentType(args.headers, args.contentType);
  result[CORRELATION_ID_HEADER] = sharedCorrelationId(args.headers, args.correlationId) ?? randomUUID();
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

/**
 * Every row of a batch's headers as JSON text, one per line (publishBatch's $5,
 * src/producer/sql.ts), built from parts: what the rows share (the caller's headers and a
 * middleware's injected ones, checked once) is written once, and each row adds only its content
 * type and correlation id. The same JSON object as headersJson of withInjectedHeaders' row (jsonb
 * keeps no key order), without a headers object or a JSON writer per row (issue 18: they were a
 * sixth of publishBatch's Node CPU per message; BENCHMARKS.md, "Issue 18: batch publish").
 * `contentTypes` are rowContentType's; `correlationIds` one per row.
 */
export function batchHeaderLines(
  headers: Headers,
  injected: Readonly<Record<string, string>>,
  contentTypes: readonly string[],
  correlationIds: readonly string[],
): string {
  const extra = validateHeaders('headers injected by a publish middleware', injected);
  const shared = Object.keys(extra).length === 0 ? headers : { ...headers, ...extra };
  let prefix = '{';
  for (const name of Object.keys(shared)) {
    // The envelope's two are the row's own (injected headers never replace them); an undefined value is left out, as JSON.stringify does.
    if (name === CONTENT_TYPE_HEADER || name === CORRELATION_ID_HEADER) continue;
    const value = shared[name];
    if (value !== undefined) prefix += `${jsonString(name)}:${jsonString(value)},`;
  }
  prefix += `"${CONTENT_TYPE_HEADER}":`;
  const middle = `,"${CORRELATION_ID_HEADER}":`;
  let lines = '';
  let lastType = '';
  let lastTypeJson = '';
  for (let i = 0; i < contentTypes.length; i += 1) {
    const type = contentTypes[i] ?? '';
    // A batch's rows mostly share one content type: encode it once per run of equal ones.
    if (i === 0 || type !== lastType) {
      lastType = type;
      lastTypeJson = jsonString(type);
    }
    lines += `${i === 0 ? '' : '\n'}${prefix}${lastTypeJson}${middle}${jsonString(correlationIds[i] ?? '')}}`;
  }
  return lines;
}
