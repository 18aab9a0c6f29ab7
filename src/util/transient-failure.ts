import { sqlstateOf, unanswered } from './unanswered.js';

/**
 * SQLSTATE classes and codes the server answers a statement with for its own reasons, not for
 * what the transaction wrote: run again, the same work may well commit.
 * - 40: transaction rollback (a serialization failure, a deadlock);
 * - 53: insufficient resources (disk full, out of memory, too many connections);
 * - 57: operator intervention (a statement_timeout or a cancel, a shutdown);
 * - 58: system error (an I/O error);
 * - 55P03 lock_not_available (a lock_timeout);
 * - 25006 read_only_sql_transaction (connected to a standby, as after a failover).
 */
const TRANSIENT_CLASSES = ['40', '53', '57', '58'];
const TRANSIENT_CODES = ['55P03', '25006'];

/**
 * Whether a statement's failure is the database's or the connection's rather than its
 * transaction's: no answer at all (util/unanswered.ts: a client-side timeout, a lost connection, a
 * terminated backend) or one of the codes above. Anything else the server answered (a constraint,
 * a trigger's exception, a statement in a failed transaction) is what the transaction did.
 */
export function transient(error: unknown): boolean {
  if (unanswered(error)) return true;
  const code = sqlstateOf(error) as string;
  return TRANSIENT_CLASSES.includes(code.slice(0, 2)) || TRANSIENT_CODES.includes(code);
}

/**
 * Whether a server's answer to a statement of the handler's own (on ctx.client) is the database's
 * doing rather than the handler's: a serialization failure or deadlock (class 40), a terminated
 * backend (57P: a shutdown, an administrator, a crash), a connection exception (08, but for 08P01,
 * a protocol violation: a statement sent with the wrong number of parameters), a read-only standby
 * after a failover (25006). Narrower than transient(): a statement or lock timeout, a resource
 * limit or an I/O error may be what the handler's own statement asked for (its `SET LOCAL
 * statement_timeout`, a `NOWAIT`, a huge sort), and is the handler's.
 *
 * An answer that ended the session (unanswered.ts sessionEnded: sent FATAL, as PgBouncer sends its
 * 08P01 when it drops a client) is not judged here: it marks the connection lost as it arrives
 * (DeliveryTransaction), whatever the handler then throws.
 */
export function serverFault(error: unknown): boolean {
  const code = sqlstateOf(error);
  if (code === undefined) return false;
  if (code.startsWith('08')) return code !== '08P01';
  return code.startsWith('40') || code.startsWith('57P') || code === '25006';
}
