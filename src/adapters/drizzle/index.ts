/**
 * txoutbox/drizzle: publish through a Drizzle transaction on PostgreSQL (architecture/data-layers.md).
 *
 *   await db.transaction(async (tx) => {
 *     await tx.insert(orders).values(order);
 *     await outbox.publish(fromDrizzle(tx), 'orders.created', order);
 *   });
 *
 * No runtime (or type) dependency on `drizzle-orm`: it is an optional peer, so the slice used here
 * is declared structurally, and the raw statement is handed to `tx.execute` as an object of the
 * shape Drizzle's own `sql` template builds.
 */
import { NotInTransactionError } from '../../errors.js';
import { isPool, type TransactionAdapter, transactionStatus } from '../../producer/executor.js';
import { resultRows } from '../shared/result-rows.js';
import { snakeCaseColumns } from '../shared/snake-case-columns.js';

/**
 * The slice of Drizzle's `PgTransaction` (the `tx` of `db.transaction(async (tx) => …)`) used
 * here. `db` fits this type too: it is told apart at run time (drizzleKinds).
 */
export interface DrizzleTransaction {
  // `never` with method syntax: Drizzle's execute(query: SQLWrapper | string) is accepted without
  // naming its types; the adapter passes a structural SQLWrapper (rawStatement).
  execute(query: never): PromiseLike<unknown>;
}

const LIBRARY = 'drizzle';

/** Drizzle marks each of its classes with this key (drizzle-orm/entity.js), which its `is()` reads. */
const ENTITY_KIND = Symbol.for('drizzle:entityKind');

/** The entity kinds along the class chain of `value` (`NodePgTransaction`, `PgTransaction`, `PgDatabase`). */
function drizzleKinds(value: object): string[] {
  const kinds: string[] = [];
  for (let cls: unknown = value.constructor; typeof cls === 'function'; cls = Object.getPrototypeOf(cls)) {
    const kind = (cls as { [ENTITY_KIND]?: unknown })[ENTITY_KIND];
    if (typeof kind === 'string') kinds.push(kind);
  }
  return kinds;
}

/**
 * What `tx.execute` needs of a statement, as Drizzle 0.45's own `sql` template provides it:
 * `execute` calls `getSQL()`, and the dialect calls `toQuery()` on the result for the text and the
 * parameters it hands, unchanged, to the driver (node-postgres `client.query`, postgres.js
 * `unsafe`). `sql.raw(text)` would send no parameters; building `sql` chunks would need
 * drizzle-orm at run time.
 */
function rawStatement(text: string, values: readonly unknown[]): object {
  const query = { sql: text, params: [...values] };
  const statement = { toQuery: () => query };
  return { getSQL: () => statement };
}

/**
 * The node-postgres client under the transaction (Drizzle's node-postgres session keeps it in
 * `session.client`, TypeScript-private), for the core to watch (and to refuse, were it a pool); undefined on
 * postgres-js (a postgres.js `sql`) and on drivers whose client is not node-postgres' kind.
 */
function pgClientOf(tx: object): object | undefined {
  const client = (tx as { session?: { client?: unknown } }).session?.client;
  if (client === null || typeof client !== 'object' || typeof (client as { query?: unknown }).query !== 'function')
    return undefined;
  // A pool here would mean statements outside the transaction: the core refuses it before any statement.
  return isPool(client) || transactionStatus(client) !== undefined ? client : undefined;
}

function refuse(got: string): never {
  throw new NotInTransactionError(
    `fromDrizzle() from txoutbox/drizzle needs the \`tx\` of a Drizzle PostgreSQL transaction, got ${got}: ` +
      'the outbox row would commit without your data. ' +
      'Fix: publish inside db.transaction(async (tx) => { …; await outbox.publish(fromDrizzle(tx), …) }).',
  );
}

/**
 * Wraps the `tx` of `db.transaction(async (tx) => …)` (or of a nested `tx.transaction(…)`) for
 * `outbox.publish`, `publishBatch`, `cancelTimer` and `fetchUnprocessed`, on Drizzle's
 * node-postgres and postgres-js drivers.
 *
 * Wake-up: on node-postgres, after commit: the transaction's pg client is handed over and its
 * COMMIT watched, so a nested transaction (a savepoint) wakes nobody before the outer COMMIT. On
 * postgres-js, in the transaction: postgres.js has neither a pg client nor an after-commit hook.
 *
 * @throws NotInTransactionError for `db` (each statement its own transaction), anything that is
 *   not a Drizzle PostgreSQL transaction, and a node-postgres transaction that has already ended.
 */
export function fromDrizzle(tx: DrizzleTransaction): TransactionAdapter {
  // Typed callers cannot pass a non-object; JavaScript callers can.
  const handle: unknown = tx;
  if (handle === null || typeof handle !== 'object') refuse(String(handle));
  const kinds = drizzleKinds(handle);
  if (!kinds.includes('PgTransaction')) {
    refuse(
      kinds.includes('PgDatabase')
        ? `the database \`db\` (${kinds[0]}), where each statement is its own transaction`
        : kinds.length > 0
          ? `a ${kinds[0]}, not a PostgreSQL transaction`
          : 'an object that is not a Drizzle transaction',
    );
  }
  const client = pgClientOf(tx);
  if (client !== undefined && transactionStatus(client) === 'I') {
    refuse('a transaction that has already ended (its connection is idle, back in the pool)');
  }
  return {
    txoutboxAdapter: LIBRARY,
    query: async (text, values) =>
      snakeCaseColumns(resultRows(await tx.execute(rawStatement(text, values) as never), 'drizzle', 'tx.execute()')),
    // Drizzle runs a statement sent after its transaction ended on the idle connection, on its own:
    // txoutbox sends its statements on the client itself, checked at dispatch (Drizzle's logger does not see them).
    ...(client === undefined ? {} : { pgClient: () => Promise.resolve(client), statementsOnPgClient: true }),
  };
}
