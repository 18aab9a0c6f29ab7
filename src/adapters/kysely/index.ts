/**
 * `txoutbox/kysely`: publish through a Kysely transaction (architecture/data-layers.md, "Kysely").
 *
 * No import of kysely, not even a type: it is an optional peer, and this file's declarations must
 * compile without it. The interfaces below are the slice of Kysely the adapter uses (tested on 0.29);
 * Kysely's own `Transaction` and `ControlledTransaction` fit them as they are.
 */
import { NotInTransactionError } from '../../errors.js';
import type { TransactionAdapter } from '../../producer/executor.js';
import { SavepointGuardedQuery } from '../../producer/savepoint-guarded-query.js';

/**
 * What `Kysely.executeQuery` needs of a compiled query (kysely's `CompiledQuery`): the executor
 * reads `sql` and `parameters`, hands `queryId` to plugins and to the driver's cancellation, and
 * `query` is the operation node (`CompiledQuery.raw` makes a `RawNode`). Built here rather than
 * through `CompiledQuery.raw`, which is a runtime import of kysely.
 */
export interface KyselyRawQuery {
  readonly sql: string;
  readonly parameters: readonly unknown[];
  readonly query: {
    readonly kind: 'RawNode';
    readonly sqlFragments: readonly string[];
    readonly parameters: readonly never[];
  };
  readonly queryId: { readonly queryId: string };
}

/** What `getExecutor()` hands back (Kysely's QueryExecutor, marked internal in its types). */
export interface KyselyExecutorLike {
  provideConnection<T>(consumer: (connection: object) => Promise<T>): Promise<T>;
}

/** The slice of Kysely's `Transaction` (and `ControlledTransaction`) used here. */
export interface KyselyTransactionLike {
  /** `true` on a `Transaction`, `false` on the `Kysely` instance (`db`). */
  readonly isTransaction: boolean;
  executeQuery(query: KyselyRawQuery): Promise<{ readonly rows: readonly unknown[] }>;
  /** The same transaction without the user's plugins (CamelCasePlugin would rename our columns). */
  withoutPlugins?(): KyselyTransactionLike;
  /**
   * Kysely's executor, to tell its node-postgres connection (PostgresDialect) from another driver's
   * before a statement is guarded. Without it, statements run unguarded.
   */
  getExecutor?(): KyselyExecutorLike;
  /** ControlledTransaction only (`db.startTransaction().execute()`). */
  readonly isCommitted?: boolean;
  /** ControlledTransaction only. */
  readonly isRolledBack?: boolean;
}

const FIX =
  'Fix: pass the `trx` of db.transaction().execute(async (trx) => …), or of const trx = await db.startTransaction().execute() before you commit it.';

function refuse(got: string): never {
  throw new NotInTransactionError(
    `fromKysely() needs an open Kysely transaction, got ${got}: the outbox row would commit without your data. ${FIX}`,
  );
}

function describe(handle: unknown): string {
  if (handle === null) return 'null';
  if (typeof handle !== 'object') return typeof handle;
  return `an object without executeQuery()`;
}

let queryCount = 0;

function rawQuery(text: string, values: readonly unknown[], guarded?: SavepointGuardedQuery): KyselyRawQuery {
  queryCount = (queryCount + 1) % Number.MAX_SAFE_INTEGER;
  return {
    // PostgresDialect hands `sql` to node-postgres' client.query unchanged: the guarded query goes
    // as a Submittable, and Kysely awaits it like the Result it resolves to.
    sql: guarded === undefined ? text : (guarded as unknown as string),
    parameters: [...values],
    query: { kind: 'RawNode', sqlFragments: [text], parameters: [] },
    // Compared by the postgres driver's cancellation (only used with an abort signal, never here).
    queryId: { queryId: `txoutbox-${queryCount}` },
  };
}

/**
 * Wraps the `trx` Kysely hands you inside a transaction so `outbox.publish(…)` (and publishBatch,
 * cancelTimer, fetchUnprocessed) runs in it:
 *
 * ```ts
 * await db.transaction().execute(async (trx) => {
 *   await trx.insertInto('orders').values(order).execute();
 *   await outbox.publish(fromKysely(trx), 'order.created', order);
 * });
 * ```
 *
 * Refuses `db` itself (each of its queries is its own transaction) and a controlled transaction
 * that was already committed or rolled back, with `NotInTransactionError`.
 *
 * Wake-up: in the transaction. Kysely exposes neither the node-postgres client under `trx` (its
 * PostgresConnection keeps it in a private field) nor an after-commit hook, so the NOTIFY rides in
 * the insert and PostgreSQL delivers it at COMMIT.
 */
export function fromKysely(trx: KyselyTransactionLike): TransactionAdapter {
  // Checked at run time too: a JavaScript caller, or a cast, can hand over anything.
  const handle: unknown = trx;
  if (
    handle === null ||
    typeof handle !== 'object' ||
    typeof (handle as { executeQuery?: unknown }).executeQuery !== 'function'
  ) {
    refuse(describe(handle));
  }
  if (!trx.isTransaction) refuse('the Kysely instance (`db`, isTransaction is false): each of its queries commits on its own');
  if (trx.isCommitted === true) refuse('a controlled transaction that is already committed');
  if (trx.isRolledBack === true) refuse('a controlled transaction that is already rolled back');
  // The user's plugins transform results by column name (CamelCasePlugin: next_attempt_at →
  // nextAttemptAt); txoutbox reads its own columns, so its statements run without them.
  const target = typeof trx.withoutPlugins === 'function' ? trx.withoutPlugins() : trx;
  let onNodePostgres: Promise<boolean> | undefined;
  return {
    txoutboxAdapter: 'kysely',
    query: async (text, values, inTransaction) => {
      // A write must not run after the transaction ended. Kysely would still run it (an un-awaited
      // publish queued behind its ROLLBACK commits on its own) and keeps its pg client private, so
      // the server checks: the statement goes behind a SAVEPOINT in the same round trip.
      onNodePostgres ??= kyselyOnNodePostgres(target);
      const guarded =
        inTransaction !== undefined && (await onNodePostgres)
          ? new SavepointGuardedQuery(text, values, inTransaction)
          : undefined;
      return (await target.executeQuery(rawQuery(text, values, guarded))).rows as Record<string, unknown>[];
    },
  };
}

/**
 * Whether the transaction's connection is PostgresDialect's (node-postgres, or a pool of its kind
 * such as Neon's), which passes a Submittable through; another dialect's driver (postgres.js,
 * PGlite) would be handed an object where it expects text.
 */
async function kyselyOnNodePostgres(trx: KyselyTransactionLike): Promise<boolean> {
  if (typeof trx.getExecutor !== 'function') return false;
  return trx
    .getExecutor()
    .provideConnection((connection) => Promise.resolve(connection.constructor.name === KYSELY_NODE_POSTGRES_CONNECTION));
}

/** The class PostgresDialect's driver wraps each node-postgres client in (kysely/dist/dialect/postgres). */
const KYSELY_NODE_POSTGRES_CONNECTION = 'PostgresConnection';
