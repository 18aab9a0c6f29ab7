import { sqlstateOf, unanswered } from './unanswered.js';

/**
 * SQLSTATE classes and codes the server answers a statement with for its own reasons, not for
 * what the transaction wrote: run again, the same work may well commit.
 * - 08: connection exception;
 * - 40: transaction rollback (a serialization failure, a deadlock);
 * - 53: insufficient resources (disk full, out of memory, too many connections);
 * - 57: operator intervention (a statement_timeout or a cancel, a shutdown);
 * - 58: system error (an I/O error);
 * - 55P03 lock_not_available (a lock_timeout);
 * - 25006 read_only_sql_transaction (connected to a standby, as after a failover).
 */
const TRANSIENT_CLASSES = ['08', '40', '53', '57', '58'];
const TRANSIENT_CODES = ['55P03', '25006'];

/**
 * Whether a statement's failure is the database's or the connection's rather than its
 * transaction's: no answer at all (util/unanswered.ts: a client-side timeout, a lost connection, a
 * terminated backend) or one of the codes above. Anything else the server answered (a constraint,
 * a trigger's exception, a statement in a failed transaction) is what the transaction did.
 */
export function transient(error: unknown): boolean {
  return unanswered(error) || answeredTransient(error);
}

/**
 * Whether `error` is the server's answer (a SQLSTATE and a severity, as node-postgres and pg-native
 * raise it) for one of the database's reasons: an error a handler threw that is not its own.
 * Unlike transient(), an error without a SQLSTATE (any of the handler's own) is not one.
 */
export function answeredTransient(error: unknown): boolean {
  const code = sqlstateOf(error);
  return code !== undefined && (TRANSIENT_CLASSES.includes(code.slice(0, 2)) || TRANSIENT_CODES.includes(code));
}

/** A server's answer that ends the connection itself: a connection exception or a terminated backend. */
export function endsConnection(error: unknown): boolean {
  const code = sqlstateOf(error);
  return code !== undefined && (code.startsWith('08') || code.startsWith('57P'));
}
