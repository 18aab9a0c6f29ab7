import { CONTENT_TYPE_HEADER, CONTENT_TYPES } from './headers.js';

/**
 * What a row's content type says its payload is: JSON, text (UTF-8), or bytes (anything else). By
 * its media type, not a prefix: `application/jsonl`, `application/json-seq` and `application/json5`
 * (a relabelled Buffer) were parsed as JSON and failed every delivery. A text type in another
 * charset (`text/csv; charset=iso-8859-1`) stays bytes: decoded as UTF-8 it would be mangled.
 */
export function bodyKind(headers: Readonly<Record<string, string>>): 'json' | 'text' | 'bytes' {
  // A header written outside the API (jsonb edited by hand) may be any JSON value.
  const raw: unknown = headers[CONTENT_TYPE_HEADER];
  if (typeof raw !== 'string') return 'bytes';
  // The content types publish writes, without parsing: the delivery path reads one per message.
  if (raw === CONTENT_TYPES.json) return 'json';
  if (raw === CONTENT_TYPES.text) return 'text';
  if (raw === CONTENT_TYPES.octetStream) return 'bytes';
  const [type = '', ...parameters] = raw.toLowerCase().split(';');
  const mediaType = type.trim();
  const json = mediaType === 'application/json';
  if (!json && !mediaType.startsWith('text/')) return 'bytes';
  const charset = parameters.map((p) => p.trim()).find((p) => p.startsWith('charset='));
  const name = charset?.slice('charset='.length).replaceAll('"', '');
  // UTF-8, or ASCII (a subset of it); any other charset would be mangled by a UTF-8 decode.
  if (name !== undefined && !UTF8_READABLE.has(name)) return 'bytes';
  return json ? 'json' : 'text';
}

const UTF8_READABLE = new Set(['utf-8', 'utf8', 'us-ascii', 'ascii']);

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
