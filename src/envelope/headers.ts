/** Header names the envelope manages; user headers may set them only in agreement with it. */
export const CONTENT_TYPE_HEADER = 'content-type';
export const CORRELATION_ID_HEADER = 'correlation-id';
/** The id of the message whose handler published this one (`ctx.publish`, `ctx.causedBy()`). */
export const CAUSATION_ID_HEADER = 'causation-id';

export const CONTENT_TYPES = {
  octetStream: 'application/octet-stream',
  text: 'text/plain; charset=utf-8',
  json: 'application/json',
} as const;

/** A message's headers: a flat map of strings, stored as the row's `headers` jsonb. */
export type Headers = Readonly<Record<string, string>>;

/**
 * A row's `headers` as read back: the stored JSON object, or `{}` when the row holds anything
 * else. Publish always writes an object, but a row written by hand may hold `null` (which the
 * column's NOT NULL allows as jsonb), an array or a scalar; read as headers, that threw a TypeError
 * outside the handler once a consume middleware was registered, and the row was claimed again
 * after each lease, never counted or dead-lettered (review). Values are passed on as stored.
 */
export function rowHeaders(value: unknown): Headers {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Headers) : {};
}

/** A header's value when it is a string (a row written by hand may store a number, an object…). */
export function stringHeader(headers: Headers, name: string): string | undefined {
  const value: unknown = headers[name];
  return typeof value === 'string' ? value : undefined;
}
