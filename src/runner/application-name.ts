/**
 * The `application_name` each runner process connects with, so pg_stat_activity (and PgBouncer's
 * SHOW CLIENTS) tell which consumer holds which connections: `txoutbox-<consumer>` for a child,
 * `txoutbox-supervisor` for the runner itself. Consumer names are letters, digits, _ and -
 * (validate-consumer.ts); PostgreSQL keeps the first 63 bytes.
 */
export function applicationName(consumer: string | undefined): string {
  return consumer === undefined ? 'txoutbox-supervisor' : `txoutbox-${consumer}`;
}

/** `url` with application_name set, unless the URL names one already (the operator's choice wins). */
export function withApplicationName(url: string, name: string): string {
  const parsed = new URL(url);
  if (parsed.searchParams.has('application_name')) return url;
  parsed.searchParams.set('application_name', name);
  return parsed.toString();
}
