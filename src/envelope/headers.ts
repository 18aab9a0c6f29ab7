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
