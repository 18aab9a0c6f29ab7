/**
 * The dashboard's URLs, built in one place: a queue name is a path segment (queueSegment), filters
 * are query parameters.
 */

/**
 * Written before the queue names `.` and `..` in a path. Resolving a URL (WHATWG URL: every browser,
 * fetch(), the server's own `new URL()`) removes the dot segments `.` and `..`, and counts `%2E`,
 * `.%2e` and the like as dots too: no percent-encoding gets `/queues/..` to the server. A raw `@` is
 * never written by encodeURIComponent (it writes `%40`), so `@.` and `@..` are no other name's segment.
 */
const DOTS_PREFIX = '@';

/**
 * A queue name as one path segment: percent-encoded (a `/`, `?`, `%` or `<` stays inside the
 * segment), with `.` and `..` written `@.` and `@..`. Any other name's segment is what it was before
 * the prefix, so old links and bookmarks still open the same queue.
 */
export function queueSegment(queue: string): string {
  return queue === '.' || queue === '..' ? `${DOTS_PREFIX}${queue}` : encodeURIComponent(queue);
}

/** queueSegment's inverse. Throws URIError on a malformed escape (`%zz`, half a UTF-8 sequence). */
export function queueOfSegment(segment: string): string {
  if (segment === `${DOTS_PREFIX}.` || segment === `${DOTS_PREFIX}..`) return segment.slice(DOTS_PREFIX.length);
  return decodeURIComponent(segment);
}

export function queueHref(queue: string, query: Readonly<Record<string, string | undefined>> = {}): string {
  return withQuery(`/queues/${queueSegment(queue)}`, query);
}

/** Where the queue page's Pause and Resume forms post. */
export function queueActionHref(queue: string, action: 'pause' | 'resume'): string {
  return `/queues/${queueSegment(queue)}/${action}`;
}

export function dlqHref(query: Readonly<Record<string, string | undefined>> = {}): string {
  return withQuery('/dlq', query);
}

/**
 * Where a DLQ form posts, its filter (queue, reason) in the URL's query. Not in hidden fields: a
 * browser submits every line break of a form value as CRLF (HTML's newline normalization), so a
 * queue named `a\nb` came back as `a\r\nb` and a confirmed purge acted on another queue's rows.
 * Percent-encoded in the URL, the name comes back as it was written.
 */
export function dlqActionHref(
  action: 'redrive' | 'purge',
  filter: { readonly queue?: string | undefined; readonly reason?: string | undefined },
): string {
  return withQuery(`/dlq/${action}`, { queue: filter.queue, reason: filter.reason });
}

export function dlqRowHref(id: string): string {
  return `/dlq/${encodeURIComponent(id)}`;
}

export function withQuery(path: string, query: Readonly<Record<string, string | undefined>>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value !== undefined && value !== '') params.set(key, value);
  const text = params.toString();
  return text === '' ? path : `${path}?${text}`;
}
