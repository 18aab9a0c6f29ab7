/**
 * Whether a statement's failure leaves its outcome unknown: anything but an ERROR the server
 * answered it with. A client-side timeout (node-postgres' query_timeout), a connection lost or
 * reset, a backend terminated (a FATAL) may come after the statement ran, or committed, on the
 * server; an ERROR (a statement timeout, a deadlock, a constraint) means it did not.
 */
export function unanswered(error: unknown): boolean {
  return (error as { severity?: unknown } | null | undefined)?.severity !== 'ERROR';
}
