import { NotInTransactionError } from '../errors.js';

/**
 * What publish needs from a node-postgres caller: something that runs a parameterised statement
 * on the connection of their open transaction. node-postgres' Client and PoolClient fit as they
 * are (and a Pool, with `autocommit: true`).
 */
export interface Executor {
  query(config: { text: string; values?: unknown[]; name?: string }): Promise<{ rows: unknown[]; rowCount: number | null }>;
}

/**
 * Another data layer's open transaction, wrapped by its adapter (`txoutbox/kysely`,
 * `txoutbox/prisma`, …; architecture/data-layers.md). The adapter refuses a handle that is not a
 * transaction when it is built, so an adapter always stands for one open transaction.
 *
 * Every statement txoutbox sends through it is driver-neutral (architecture/producer.md): its
 * parameters are strings, numbers, null and one Buffer (bytea), JSON and arrays travel as text
 * and are cast in SQL, and no result column has a type a driver may fail to decode.
 */
export interface TransactionAdapter {
  /** The data layer's name, shown in errors (`'kysely'`); its presence marks the object as an adapter. */
  readonly txoutboxAdapter: string;
  /**
   * Runs `text` (with `$1`…`$n` placeholders) in the transaction and resolves to its result rows.
   * `inTransaction` names the operation (`publish`) when the statement writes and must never run
   * outside the transaction: an adapter whose layer would still run it after a COMMIT or ROLLBACK
   * has the server refuse it there (Kysely: savepoint-guarded-query.ts).
   */
  query(text: string, values: readonly unknown[], inTransaction?: string): Promise<readonly Record<string, unknown>[]>;
  /**
   * The node-postgres client carrying the transaction, when the data layer exposes it: its COMMIT
   * is watched and the wake-up follows it (the default after-commit mode). Resolves to undefined
   * when the transaction runs on another driver. Looked up before every statement: a pool, or a
   * client back to idle (the transaction ended), is refused with NotInTransactionError.
   */
  pgClient?(): Promise<object | undefined>;
  /**
   * True when `query` would still run a statement issued before the transaction ended but sent
   * after it (an un-awaited publish queued behind the layer's COMMIT or ROLLBACK runs on its own):
   * txoutbox then runs its statements on `pgClient()` itself, where node-postgres' dispatch is
   * checked (in-transaction-query.ts), and the layer's logger does not see them. Leave it unset
   * when the layer refuses statements once its transaction ended (Knex, Sequelize, TypeORM, Prisma).
   */
  readonly statementsOnPgClient?: boolean;
  /**
   * A per-transaction after-commit hook, used when no watchable pg client is reachable.
   * `transaction` identifies the outermost transaction: one hook per transaction, however many
   * publishes it holds. `onCommit` must run its callback only once the COMMIT has returned, never
   * before and never on ROLLBACK; a data layer may also run it after a COMMIT that PostgreSQL
   * answered with ROLLBACK (a transaction that had failed): a spurious wake-up, never an early one.
   */
  readonly commitHook?: { readonly transaction: object; onCommit(callback: () => void): void };
}

/** What every producer call accepts as its first argument. */
export type TransactionTarget = Executor | TransactionAdapter;

interface PoolLike {
  totalCount: number;
  idleCount: number;
  connect: unknown;
}

export function isPool(value: object): value is PoolLike {
  const candidate = value as Partial<PoolLike>;
  return (
    typeof candidate.totalCount === 'number' && typeof candidate.idleCount === 'number' && typeof candidate.connect === 'function'
  );
}

export function isTransactionAdapter(value: unknown): value is TransactionAdapter {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as { txoutboxAdapter?: unknown }).txoutboxAdapter === 'string' &&
    typeof (value as { query?: unknown }).query === 'function'
  );
}

/** node-postgres >= 8.13 exposes the server's transaction status: 'I' idle, 'T' in a transaction, 'E' failed. */
export function transactionStatus(value: object): string | null | undefined {
  const fn = (value as { getTransactionStatus?: unknown }).getTransactionStatus;
  return typeof fn === 'function' ? (fn.call(value) as string | null) : undefined;
}

/** The slice of node-postgres' `client.connection` (an EventEmitter of parsed protocol messages) used here. */
export interface ProtocolEvents {
  on(event: string, listener: (message: never) => void): unknown;
  removeListener(event: string, listener: (message: never) => void): unknown;
}

export function protocolEvents(executor: object): ProtocolEvents | undefined {
  const connection = (executor as { connection?: Partial<ProtocolEvents> | null }).connection;
  return connection !== null &&
    typeof connection === 'object' &&
    typeof connection.on === 'function' &&
    typeof connection.removeListener === 'function'
    ? (connection as ProtocolEvents)
    : undefined;
}

/** A node-postgres client whose COMMIT this process can see: status, protocol events, no pipelining. */
export function isObservableClient(executor: object): boolean {
  return (
    transactionStatus(executor) !== undefined &&
    (executor as { pipeline?: unknown }).pipeline !== true &&
    protocolEvents(executor) !== undefined
  );
}

/**
 * The handles of other data layers, by the method that begins their transactions: a node-postgres
 * client has none of them. Refused with the adapter to use instead of being run as an executor.
 */
const DATA_LAYER_METHODS: readonly (readonly [string, string])[] = [
  [
    'createQueryRunner',
    'a TypeORM DataSource (use fromTypeORM(manager) inside dataSource.transaction(…), from txoutbox/typeorm)',
  ],
  ['$transaction', 'a Prisma client (use fromPrisma(tx) inside prisma.$transaction(…), from txoutbox/prisma)'],
  ['transactional', 'a MikroORM EntityManager (use fromMikroORM(em) inside em.transactional(…), from txoutbox/mikro-orm)'],
  ['begin', 'a postgres.js `sql` (use fromPostgres(tx) inside sql.begin(…), from txoutbox/postgres)'],
  ['tx', 'a pg-promise database (pass the node-postgres client of a transaction instead)'],
  [
    'transaction',
    'a data layer’s database handle (Knex, Sequelize, Kysely, Drizzle, a TypeORM EntityManager: wrap its transaction with its adapter)',
  ],
];

function dataLayerHandle(target: object): string | undefined {
  // A node-postgres client (the common case, on every publish) is told by its status read: no lookup.
  if (typeof (target as { getTransactionStatus?: unknown }).getTransactionStatus === 'function') return undefined;
  for (const [method, what] of DATA_LAYER_METHODS) {
    if (typeof (target as Record<string, unknown>)[method] === 'function') return what;
  }
  return undefined;
}

const ADAPTERS_HINT =
  'Using another data layer? Wrap its transaction with its adapter: fromKysely(trx) from txoutbox/kysely, fromPrisma(tx) from txoutbox/prisma, … (README, "Data layers").';

/**
 * The transactional contract (DESIGN invariant 1) is only as good as the executor: a pool or a
 * client outside BEGIN commits the row on its own, with or without the caller's data. Both are
 * refused unless the caller says `autocommit: true`, which makes "publish on its own" explicit.
 * Adapters check their own handle when they are built. Known limit: a BEGIN sent without
 * awaiting it is not yet visible in the client's status.
 */
export function assertTransactional(
  operation: string,
  target: unknown,
  autocommit: boolean,
): asserts target is TransactionTarget {
  if (isTransactionAdapter(target)) return;
  if (target === null || typeof target !== 'object' || typeof (target as { query?: unknown }).query !== 'function') {
    throw new NotInTransactionError(
      `outbox.${operation}() needs your open transaction as its first argument (a node-postgres client after BEGIN, or an adapter's wrapper), got ${target === null ? 'null' : typeof target}. ${ADAPTERS_HINT}`,
    );
  }
  const layer = dataLayerHandle(target);
  if (layer !== undefined) {
    // Whatever `autocommit` says: its query() is not node-postgres' (TypeORM's DataSource answers
    // an array of rows), and it ran the statement on a pooled connection, committed on its own,
    // before the call failed with a TypeError.
    throw new NotInTransactionError(
      `outbox.${operation}() was given ${layer}, not a node-postgres client: its queries run on a pooled connection, each its own transaction, so the outbox row would commit without your data. ${ADAPTERS_HINT}`,
    );
  }
  if (autocommit) return;
  if (isPool(target)) {
    throw new NotInTransactionError(
      `outbox.${operation}() was given a pg.Pool: each pool query is its own transaction, so the outbox row would commit without your data. ` +
        `Fix: pass the client of your transaction (const client = await pool.connect(); await client.query('BEGIN'); …), ` +
        `or pass { autocommit: true } to publish outside any transaction on purpose.`,
    );
  }
  const status = transactionStatus(target);
  if (status === 'I') {
    throw new NotInTransactionError(
      `outbox.${operation}() was given a client that is not inside a transaction, so the outbox row would commit on its own. ` +
        `Fix: await client.query('BEGIN') first, or pass { autocommit: true } to publish outside any transaction on purpose.`,
    );
  }
}
