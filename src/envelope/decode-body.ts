import { CONTENT_TYPE_HEADER } from './headers.js';

/** What a row's content type says its payload is: JSON, text (UTF-8), or bytes (anything else). */
export function bodyKind(headers: Readonly<Record<string, string>>): 'json' | 'text' | 'bytes' {
  // A header written outside the API (jsonb edited by hand) may be any JSON value.
  const raw: unknown = headers[CONTENT_TYPE_HEADER];
  const contentType = typeof raw === 'string' ? raw.toLowerCase() : '';
  if (contentType.startsWith('application/json')) return 'json';
  return contentType.startsWith('text/') ? 'text' : 'bytes';
}

/**
 * The inverse of encodeBody, chosen by the row's content type (bodyKind): JSON is parsed, text is
 * decoded as UTF-8, anything else (bytes, or a content type the caller set for bytes) stays a Buffer.
 */
export function decodeBody(payload: Buffer, headers: Readonly<Record<string, string>>): unknown {
  const kind = bodyKind(headers);
  if (kind === 'json') return JSON.parse(payload.toString('utf8')) as unknown;
  return kind === 'text' ? payload.toString('utf8') : payload;
}

/**
 * The body as an inspection read shows it (peek, fetchUnprocessed, the DLQ, the CLI, the dashboard,
 * txoutbox/testing): decoded, or its bytes when they do not decode. An inspection read must not fail
 * on one malformed row.
 */
export function inspectBody(payload: Buffer, headers: Readonly<Record<string, string>>): unknown {
  try {
    return decodeBody(payload, headers);
  } catch {
    return payload;
  }
}
