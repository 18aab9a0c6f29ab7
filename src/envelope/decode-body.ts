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
