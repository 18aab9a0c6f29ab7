import { CONTENT_TYPE_HEADER } from './headers.js';

/**
 * The inverse of encodeBody, chosen by the row's content type: JSON is parsed, text is decoded
 * as UTF-8, anything else (bytes, or a content type the caller set for bytes) stays a Buffer.
 */
export function decodeBody(payload: Buffer, headers: Readonly<Record<string, string>>): unknown {
  const contentType = (headers[CONTENT_TYPE_HEADER] ?? '').toLowerCase();
  if (contentType.startsWith('application/json')) return JSON.parse(payload.toString('utf8')) as unknown;
  if (contentType.startsWith('text/')) return payload.toString('utf8');
  return payload;
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
