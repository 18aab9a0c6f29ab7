import type { IncomingMessage } from 'node:http';

/** A form post is a few fields and at most a page of ids: anything bigger is refused, unread. */
export const MAX_FORM_BYTES = 64 * 1024;

/** The request's body is not a form this dashboard posts: 413 (too large) or 415 (not urlencoded). */
export class FormBodyError extends Error {
  readonly status: 413 | 415;

  constructor(status: 413 | 415, message: string) {
    super(message);
    this.name = 'FormBodyError';
    this.status = status;
  }
}

/** Reads an `application/x-www-form-urlencoded` body, bounded by MAX_FORM_BYTES. */
export async function readForm(request: IncomingMessage): Promise<URLSearchParams> {
  const type = (request.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    throw new FormBodyError(415, 'Expected a form post (application/x-www-form-urlencoded).');
  }
  const declared = Number(request.headers['content-length'] ?? '0');
  if (declared > MAX_FORM_BYTES) throw new FormBodyError(413, `A form post is at most ${MAX_FORM_BYTES} bytes.`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new FormBodyError(413, `A form post is at most ${MAX_FORM_BYTES} bytes.`);
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}
