/** A SQLSTATE: five digits or upper-case letters. */
const SQLSTATE = /^[0-9A-Z]{5}$/;

/**
 * Whether a statement's failure leaves its outcome unknown: anything but an error the server
 * answered the statement with. A client-side timeout (node-postgres' query_timeout), a connection
 * lost or reset (no SQLSTATE), a connection exception (class 08) and a backend terminated by an
 * operator or a shutdown (57P01–57P05: a COMMIT waiting for synchronous replication has already
 * committed locally when it is cut) may come after the statement ran, or committed, on the server;
 * any other server error (a statement timeout, a deadlock, a constraint) means it did not. Read
 * from the SQLSTATE, not the severity, which the server translates (lc_messages).
 */
export function unanswered(error: unknown): boolean {
  const code = sqlstateOf(error);
  return code === undefined || code.startsWith('08') || code.startsWith('57P');
}

/** The SQLSTATE of an error the server sent (a code and a severity: node-postgres' and pg-native's); undefined for any other. */
export function sqlstateOf(error: unknown): string | undefined {
  const { code, severity } = (error ?? {}) as { code?: unknown; severity?: unknown };
  return typeof severity === 'string' && typeof code === 'string' && SQLSTATE.test(code) ? code : undefined;
}
