/**
 * txoutbox/postgres: publish through a postgres.js transaction (architecture/data-layers.md).
 *
 *   await sql.begin(async (tx) => {
 *     await tx`INSERT INTO orders …`;
 *     await outbox.publish(fromPostgres(tx), 'orders.created', order);
 *   });
 *
 * No runtime (or type) dependency on `postgres`: it is an optional peer, so the slice used here is
 * declared structurally.
 */
import { NotInTransactionError } from '../../errors.js';
import type { TransactionAdapter } from '../../producer/executor.js';
import { snakeCaseColumns } from '../shared/snake-case-columns.js';

/**
 * The slice of postgres.js' `TransactionSql` (the `tx` of `sql.begin` and of `tx.savepoint`) that
 * txoutbox uses. The root `sql` fits this type too: it is told apart at run time, by `savepoint`,
 * which postgres.js gives only to a transaction's `sql`.
 */
export interface PostgresJsTransaction {
  // Method syntax on purpose: parameters are compared bivariantly, so postgres.js' own typed
  // `unsafe` (its ParameterOrJSON values) is accepted without importing its types.
  unsafe(query: string, parameters?: unknown[], options?: { prepare?: boolean }): PromiseLike<readonly object[]>;
  readonly savepoint?: unknown;
}

const LIBRARY = 'postgres.js';

/** What the refused handle is, in the user's words. */
function describeHandle(handle: unknown): string {
  if (handle === null || (typeof handle !== 'object' && typeof handle !== 'function')) return String(handle);
  const candidate = handle as { begin?: unknown; release?: unknown; unsafe?: unknown };
  if (typeof candidate.begin === 'function') return 'the root `sql` of postgres(…), where each query is its own transaction';
  if (typeof candidate.release === 'function') return 'a reserved connection (sql.reserve()), which is not a transaction';
  if (typeof candidate.unsafe !== 'function') return 'an object without unsafe(), not a postgres.js `sql`';
  return 'a postgres.js `sql` without savepoint(), so not the `tx` of sql.begin()';
}

/** True for the `tx` postgres.js hands to `sql.begin`'s and `tx.savepoint`'s callbacks. */
function isPostgresJsTransaction(handle: unknown): handle is PostgresJsTransaction {
  return (
    (typeof handle === 'function' || (typeof handle === 'object' && handle !== null)) &&
    typeof (handle as { unsafe?: unknown }).unsafe === 'function' &&
    typeof (handle as { savepoint?: unknown }).savepoint === 'function'
  );
}

/**
 * Runs txoutbox's statements on a postgres.js transaction. `prepare: true` lets postgres.js keep
 * one named statement per connection (publish is the same few texts again and again), and still
 * yields to a connection opened with `prepare: false` (PgBouncer in transaction mode): postgres.js
 * prepares only when both say so.
 *
 * Parameters (measured on postgres.js 3.4.9): postgres.js asks the server for each placeholder's
 * type before binding, so the Buffer bound to `$2::bytea` is sent as bytea, and the JSON text
 * bound to `$3::text::jsonb` as text, stored as the same jsonb value pg stores (the statements cast
 * from text because a string bound straight to `jsonb` would be JSON-encoded a second time).
 * Result columns come back under txoutbox's names even from a `sql` created with
 * `transform: postgres.camel` (or `pascal`, `kebab`); another custom column transform is not
 * supported.
 */
async function queryPostgresJs(
  tx: PostgresJsTransaction,
  text: string,
  values: readonly unknown[],
): Promise<readonly Record<string, unknown>[]> {
  // postgres.js resolves to its Result, an Array of row objects, named through the connection's
  // column transform if it has one (postgres.camel, …): snakeCaseColumns undoes that.
  return snakeCaseColumns((await tx.unsafe(text, [...values], { prepare: true })) as readonly Record<string, unknown>[]);
}

/**
 * Wraps the `tx` of `sql.begin(async (tx) => …)` (or of `tx.savepoint(async (tx) => …)`) for
 * `outbox.publish`, `publishBatch`, `cancelTimer` and `fetchUnprocessed`.
 *
 * Wake-up: in the transaction. postgres.js exposes neither a node-postgres client nor an
 * after-commit hook (the `sql.begin` promise resolves after COMMIT, but only the caller holds it),
 * so pg_notify rides in the statement and PostgreSQL delivers it at COMMIT, never on rollback.
 *
 * @throws NotInTransactionError for the root `sql` or a reserved connection: either would commit
 *   the outbox row on its own, without the caller's data.
 */
export function fromPostgres(tx: PostgresJsTransaction): TransactionAdapter {
  if (!isPostgresJsTransaction(tx)) {
    throw new NotInTransactionError(
      `fromPostgres() from txoutbox/postgres needs the \`tx\` of a ${LIBRARY} transaction, got ${describeHandle(tx)}: ` +
        'the outbox row would commit without your data. ' +
        'Fix: publish inside sql.begin(async (tx) => { …; await outbox.publish(fromPostgres(tx), …) }) (or tx.savepoint(…)).',
    );
  }
  return {
    txoutboxAdapter: LIBRARY,
    query: (text, values) => queryPostgresJs(tx, text, values),
  };
}
