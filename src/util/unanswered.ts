/** A SQLSTATE: five digits or upper-case letters. */
const SQLSTATE = /^[0-9A-Z]{5}$/;

/**
 * Whether a statement's failure leaves its outcome unknown: anything but an error the server
 * answered the statement with. A client-side timeout (node-postgres' query_timeout), a connection
 * lost or reset (no SQLSTATE), a connection exception (class 08), a backend terminated by an
 * operator or a shutdown (57P01–57P05: a COMMIT waiting for synchronous replication has already
 * committed locally when it is cut) and any other answer that ended the session (sessionEnded: a
 * pooler's, whatever its code; but a login refused) may come after the statement ran, or
 * committed, on the server; any other server error (a statement timeout, a deadlock, a
 * constraint) means it did not. Read from the SQLSTATE, and from the severity only where it says
 * the session is over (see sessionEnded).
 */
export function unanswered(error: unknown): boolean {
  const code = sqlstateOf(error);
  if (code === undefined || code.startsWith('08') || code.startsWith('57P')) return true;
  return sessionEnded(error) && !refusedLogin(code);
}

/**
 * What PostgreSQL answers a login with, FATAL, when it refuses it: a bad password or role (class
 * 28), a missing database (3D000), no connection slot left (53300), CONNECT denied (42501), a
 * database that accepts no connections (55000). A statement whose checkout failed so was never
 * sent: it did not run, and reading back whether it landed would only log in once more.
 */
function refusedLogin(code: string): boolean {
  return code.startsWith('28') || ['3D000', '53300', '42501', '55000'].includes(code);
}

/**
 * Whether a server's (or a pooler's) answer ended the session: sent `FATAL` or `PANIC`, after
 * which the connection closes, whatever the code (PgBouncer ends a client with `08P01`, other
 * poolers with codes of their own). The severity is the server's translated text (`lc_messages`;
 * node-postgres does not read the untranslated field), so a server's FATAL in another language is
 * not recognised here and is judged by its code alone; poolers do not translate.
 */
export function sessionEnded(error: unknown): boolean {
  if (sqlstateOf(error) === undefined) return false;
  const { severity } = error as { severity: string };
  return severity === 'FATAL' || severity === 'PANIC';
}

/** The SQLSTATE of an error the server sent (a code and a severity: node-postgres' and pg-native's); undefined for any other. */
export function sqlstateOf(error: unknown): string | undefined {
  const { code, severity } = (error ?? {}) as { code?: unknown; severity?: unknown };
  return typeof severity === 'string' && typeof code === 'string' && SQLSTATE.test(code) ? code : undefined;
}
