/**
 * The dashboard's URLs, built in one place: a queue name is a path segment (percent-encoded, so a
 * name with `/`, `?` or `<` stays one segment), filters are query parameters.
 */

export function queueHref(queue: string, query: Readonly<Record<string, string | undefined>> = {}): string {
  return withQuery(`/queues/${encodeURIComponent(queue)}`, query);
}

export function dlqHref(query: Readonly<Record<string, string | undefined>> = {}): string {
  return withQuery('/dlq', query);
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
