import type pg from 'pg';

import { InvalidOptionError } from './errors.js';
import { CustomStatKeys, DEFAULT_CUSTOM_STATS_LIMIT } from './instrumentation/custom-stats.js';
import type { Recorder } from './instrumentation/events.js';
import type { Middleware } from './instrumentation/middleware.js';
import { MiddlewareChain, resolveMiddlewares } from './instrumentation/middleware-chain.js';
import { type Emit, resolveRecorders } from './instrumentation/recorders.js';
import type { NotifyMode } from './producer/wake-after-commit.js';
import { DEFAULT_TABLE, resolveSchemaNames, type SchemaNames } from './schema/schema-names.js';
import { defaultRenderError, type RenderError } from './subscriber/render-error.js';
import { type BodySchemas, resolveBodySchemas } from './typed-events/body-schemas.js';
import type { AnyQueues, QueueSchemas } from './typed-events/queue-map.js';
import { rejectUnknownOptions } from './util/known-options.js';
import { consoleLogger, isLogger, type Logger } from './util/logger.js';
import { createOwnedPool, hearNewClientErrors, ownConnectionConfig, type OwnedPool } from './util/owned-pool.js';
import { transactionPoolingOptions } from './util/transaction-pooling.js';

interface CommonOptions {
  /**
   * The outbox table, schema-qualified (`app.outbox`, `public.outbox`) or not (then the
   * connection's search_path decides, as for any SQL). By default it lives in a `txoutbox` schema
   * of its own, created by migrate(), so ORM migration tools never see it as drift in yours; 0.1's
   * default was an unqualified `outbox` — keep such tables with `table: 'public.outbox'`
   * (architecture/schema.md, "Upgrading from 0.1"). At most 48 bytes with the default dlqTable
   * (its `<table>_dlq_failed_idx` must fit Postgres' 63), 53 with a dlqTable of its own or none;
   * a schema other than txoutbox or public also counts in the NOTIFY channel
   * `txoutbox.<schema>.<table>`.
   * @default 'txoutbox.outbox'
   */
  readonly table?: string;
  /**
   * The dead-letter table, or false for none (terminal rows are then deleted with a warning).
   * An unqualified name lives in the outbox table's schema. At most 52 bytes (`<dlq>_failed_idx`).
   * @default `${table}_dlq`
   */
  readonly dlqTable?: string | false;
  /**
   * Use named prepared statements on the hot path (one parse and plan per connection). Turn off
   * behind PgBouncer in transaction mode older than 1.21, which cannot keep them.
   * @default true; false with transactionPooling
   */
  readonly preparedStatements?: boolean;
  /**
   * The connections reach PostgreSQL through a transaction pooler (PgBouncer with pool_mode =
   * transaction, and the like): each transaction may run on another server session, so txoutbox
   * keeps no session state. Its pool sends no `statement_timeout` startup parameter (PgBouncer
   * refuses the connection: "unsupported startup parameter") and runs no `SET plan_cache_mode`
   * (it would land on whichever server session ran it): set both on the role instead. Also
   * changes two defaults: preparedStatements false (PgBouncer ≥ 1.21 with max_prepared_statements
   * keeps them: set it true), and listen false unless listenConnectionString names a direct
   * connection for LISTEN, which needs a session of its own. See architecture/pgbouncer.md.
   * @default false
   */
  readonly transactionPooling?: boolean;
  /**
   * Where the LISTEN connection goes when it must not share the pool's route: a direct connection
   * to PostgreSQL when the pool goes through a transaction pooler (LISTEN needs a session). The
   * same database as the pool's. @default the pool's server and credentials
   */
  readonly listenConnectionString?: string;
  /** Where txoutbox logs. A pino logger fits. @default JSON lines on stderr, warnings and errors */
  readonly logger?: Logger;
  /** Receives the outbox's internal events (see architecture/observability.md). Must not block. */
  readonly recorder?: Recorder | readonly Recorder[];
  /**
   * Run around each consume and publish (spans, bus-scope metrics) and receive handler custom stats;
   * `[a, b]` runs a around b around the handler. See architecture/observability.md.
   */
  readonly middlewares?: readonly Middleware[];
  /** Distinct ctx.stats keys this Outbox exports; new keys beyond it are dropped with a warning. @default 100 */
  readonly customStatsLimit?: number;
  /** How long stop() waits for running handlers before aborting them. @default 15000 */
  readonly gracefulTimeoutMs?: number;
  /**
   * Longest run of one of txoutbox's own statements (claims, acks, retries, DLQ moves, renewals,
   * ping) and longest wait for a connection to run it: past it the statement fails and its
   * connection is discarded, so a half-open connection cannot stall the subscriber silently. On a
   * pool txoutbox creates it is also the sessions' statement_timeout (the server cancels first, so
   * a statement given up on never commits later); set statement_timeout on a pool you pass in.
   * Keep it above your slowest DLQ move.
   * @default 10000
   */
  readonly queryTimeoutMs?: number;
  /** Turns a failure into the DLQ's last_exception (redact here); null stores nothing. @default the stack, ≤ 8 KB */
  readonly renderError?: RenderError;
  /**
   * Wake subscribers with LISTEN/NOTIFY (one extra connection per Outbox, opened once a
   * subscription first waits for work, or 1 s after start() at the latest). false: no LISTEN, so rows
   * published by other processes are found by polling; this Outbox's own after-commit publishes
   * through node-postgres still wake its subscriptions at once (architecture/subscriber.md,
   * "Local wake-ups"). Under transactionPooling, true needs listenConnectionString.
   * @default true; with transactionPooling, whether listenConnectionString is given
   */
  readonly listen?: boolean;
  /**
   * How publish wakes subscribers. `'after-commit'`: the caller's transaction sends no NOTIFY, so
   * its COMMIT does not take PostgreSQL's cluster-wide notify lock; once node-postgres has answered
   * the COMMIT, the Outbox sends the NOTIFY from a connection of its own (opened on the first such
   * wake-up), coalesced. `'in-transaction'`: pg_notify inside the insert — every publishing
   * transaction serialises on that lock at COMMIT. Executors whose COMMIT cannot be observed
   * (not a node-postgres client, `pipeline: true`) use in-transaction in either mode.
   * See architecture/decisions/0004-wake-up-after-commit.md.
   * @default 'after-commit'
   */
  readonly notify?: NotifyMode;
}

export interface ConnectionStringOptions extends CommonOptions {
  /** txoutbox creates its own pool from this and closes it in `stop()`. */
  readonly connectionString: string;
  /**
   * Size of the pool txoutbox creates from `connectionString`.
   * @default 10
   */
  readonly poolSize?: number;
  readonly pool?: never;
}

export interface PoolOptions extends CommonOptions {
  /** Your pool. txoutbox never closes it. */
  readonly pool: pg.Pool;
  readonly connectionString?: never;
  readonly poolSize?: never;
}

/** The options of `new Outbox()`; Q and I are its queue maps (architecture/typed-events.md). */
export type OutboxOptions<Q = AnyQueues, I = Q> = (ConnectionStringOptions | PoolOptions) & {
  /**
   * A Standard Schema (zod, valibot, arktype, …) per queue: publish() validates each body before
   * its INSERT (an invalid one throws InvalidBodyError) and encodes the schema's output; consume
   * validates each body before the handler runs (an invalid one ends as `rejected`, into the DLQ,
   * with the issues as its exception) and hands the handler the output. Queues without a schema
   * are not validated. Also types the Outbox when its type parameters are not given.
   * @default none
   */
  readonly schemas?: QueueSchemas<Q, I>;
};

/** The options after validation: the only thing passed downstream. */
export interface ResolvedOutboxOptions {
  readonly names: SchemaNames;
  readonly pool: pg.Pool;
  /** Set when txoutbox created the pool and must close it (never a pool the caller passed in). */
  readonly ownedPool: OwnedPool | undefined;
  readonly preparedStatements: boolean;
  /** No session state on the connections (OutboxOptions.transactionPooling). */
  readonly transactionPooling: boolean;
  readonly logger: Logger;
  readonly emit: Emit;
  readonly middlewares: MiddlewareChain;
  readonly customStats: CustomStatKeys;
  readonly gracefulTimeoutMs: number;
  readonly queryTimeoutMs: number;
  readonly renderError: RenderError;
  readonly listen: boolean;
  readonly notify: NotifyMode;
  /** The `schemas` option validated; undefined when none (publish and consume then skip validation). */
  readonly schemas: BodySchemas | undefined;
  /** How the LISTEN and NOTIFY connections are opened: the pool's server and credentials, with a connect timeout and keepalive. */
  readonly clientConfig: pg.ClientConfig;
  /** How the LISTEN connection is opened: listenConnectionString's, else clientConfig. */
  readonly listenClientConfig: pg.ClientConfig;
}

/** See OutboxOptions.queryTimeoutMs. */
export const DEFAULT_QUERY_TIMEOUT_MS = 10_000;
/** gracefulTimeoutMs's upper bound: 24 hours, well inside a Node timer's 2^31 − 1 ms. */
export const MAX_GRACEFUL_TIMEOUT_MS = 86_400_000;

const KNOWN_OPTIONS = [
  'connectionString',
  'pool',
  'poolSize',
  'table',
  'dlqTable',
  'preparedStatements',
  'transactionPooling',
  'listenConnectionString',
  'logger',
  'recorder',
  'middlewares',
  'customStatsLimit',
  'gracefulTimeoutMs',
  'queryTimeoutMs',
  'renderError',
  'listen',
  'notify',
  'schemas',
];

/**
 * A pool, not a single `pg.Client` (which has connect/query/end too): claims and acks on a client
 * would share the caller's transactions, and a claim's `synchronous_commit = off` (local to its
 * transaction) would then make the caller's own COMMIT asynchronous. The pool counters tell them apart.
 */
function isPoolLike(value: unknown): value is pg.Pool {
  const pool = value as Partial<pg.Pool> | null;
  return (
    typeof pool === 'object' &&
    pool !== null &&
    typeof pool.connect === 'function' &&
    typeof pool.query === 'function' &&
    typeof pool.end === 'function' &&
    typeof pool.totalCount === 'number' &&
    typeof pool.idleCount === 'number'
  );
}

/** Validates every constructor option once; impossible values throw InvalidOptionError. */
export function resolveOutboxOptions(options: unknown): ResolvedOutboxOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError({ option: 'options', value: options, expected: 'an object with connectionString or pool' });
  }
  const raw = options as Record<string, unknown>;
  rejectUnknownOptions(raw, 'Outbox', KNOWN_OPTIONS);
  const { connectionString, pool, poolSize } = raw;
  if ((connectionString === undefined) === (pool === undefined)) {
    throw new InvalidOptionError({
      option: 'connectionString',
      value: connectionString === undefined ? undefined : '[redacted]',
      expected: 'exactly one of connectionString or pool',
      fix: 'Pass { connectionString } to let txoutbox own a pool, or { pool } to share yours.',
      redact: connectionString !== undefined,
    });
  }
  if (connectionString !== undefined && (typeof connectionString !== 'string' || connectionString.trim() === '')) {
    throw new InvalidOptionError({
      option: 'connectionString',
      value: connectionString,
      expected: 'a non-empty string',
      redact: typeof connectionString === 'string',
    });
  }
  if (pool !== undefined && !isPoolLike(pool)) {
    throw new InvalidOptionError({
      option: 'pool',
      value: pool,
      expected: "a pg.Pool (not a pg.Client: give the Outbox a pool, and your transaction's client to publish())",
    });
  }
  if (poolSize !== undefined) {
    if (pool !== undefined) {
      throw new InvalidOptionError({
        option: 'poolSize',
        value: poolSize,
        expected: 'no poolSize together with pool',
        fix: 'Size your own pool with its max option.',
      });
    }
    if (typeof poolSize !== 'number' || !Number.isInteger(poolSize) || poolSize < 1) {
      throw new InvalidOptionError({ option: 'poolSize', value: poolSize, expected: 'an integer >= 1' });
    }
  }
  const { preparedStatements, logger } = raw;
  if (preparedStatements !== undefined && typeof preparedStatements !== 'boolean') {
    throw new InvalidOptionError({ option: 'preparedStatements', value: preparedStatements, expected: 'a boolean' });
  }
  if (logger !== undefined && !isLogger(logger)) {
    throw new InvalidOptionError({
      option: 'logger',
      value: logger,
      expected: 'an object with debug, info, warn and error methods (a pino logger fits)',
    });
  }
  const { gracefulTimeoutMs, renderError, listen } = raw;
  // At most a day: a larger number (2147483647 written as "forever") overflowed Node's timer, which
  // then fired at once: the runner SIGKILLed its processes on every stop.
  if (
    gracefulTimeoutMs !== undefined &&
    (typeof gracefulTimeoutMs !== 'number' ||
      !Number.isInteger(gracefulTimeoutMs) ||
      gracefulTimeoutMs < 0 ||
      gracefulTimeoutMs > MAX_GRACEFUL_TIMEOUT_MS)
  ) {
    throw new InvalidOptionError({
      option: 'gracefulTimeoutMs',
      value: gracefulTimeoutMs,
      expected: `an integer from 0 to ${MAX_GRACEFUL_TIMEOUT_MS} (milliseconds: 24 hours)`,
      fix: 'It bounds how long stop() waits for running handlers; a stop that may wait longer than a day is no bound.',
    });
  }
  const { queryTimeoutMs } = raw;
  if (
    queryTimeoutMs !== undefined &&
    (typeof queryTimeoutMs !== 'number' ||
      !Number.isInteger(queryTimeoutMs) ||
      queryTimeoutMs < 100 ||
      queryTimeoutMs > 3_600_000)
  ) {
    throw new InvalidOptionError({
      option: 'queryTimeoutMs',
      value: queryTimeoutMs,
      expected: 'an integer from 100 to 3600000 (milliseconds)',
      fix: 'It bounds one statement of txoutbox, not a handler: a few seconds above your slowest DLQ move.',
    });
  }
  if (renderError !== undefined && typeof renderError !== 'function') {
    throw new InvalidOptionError({ option: 'renderError', value: renderError, expected: 'a function (error) => string | null' });
  }
  if (listen !== undefined && typeof listen !== 'boolean') {
    throw new InvalidOptionError({ option: 'listen', value: listen, expected: 'a boolean' });
  }
  const pooling = transactionPoolingOptions(raw.transactionPooling, raw.listenConnectionString, listen);
  const { notify } = raw;
  if (notify !== undefined && notify !== 'after-commit' && notify !== 'in-transaction') {
    throw new InvalidOptionError({ option: 'notify', value: notify, expected: "'after-commit' or 'in-transaction'" });
  }
  const { customStatsLimit } = raw;
  if (
    customStatsLimit !== undefined &&
    (typeof customStatsLimit !== 'number' || !Number.isInteger(customStatsLimit) || customStatsLimit < 0)
  ) {
    throw new InvalidOptionError({ option: 'customStatsLimit', value: customStatsLimit, expected: 'an integer >= 0' });
  }
  const schemas = resolveBodySchemas(raw.schemas);
  const names = resolveSchemaNames(raw.table ?? DEFAULT_TABLE, raw.dlqTable);
  const resolvedLogger = logger ?? consoleLogger();
  const emit = resolveRecorders(raw.recorder, resolvedLogger);
  const middlewares = new MiddlewareChain(resolveMiddlewares(raw.middlewares), resolvedLogger);
  const customStats = new CustomStatKeys(customStatsLimit ?? DEFAULT_CUSTOM_STATS_LIMIT, resolvedLogger, (stat) => {
    middlewares.stat(stat);
  });
  const resolvedQueryTimeoutMs = queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS;
  const ownedPool =
    pool === undefined
      ? createOwnedPool(connectionString as string, poolSize ?? 10, resolvedQueryTimeoutMs, resolvedLogger, {
          sessionSettings: !pooling.transactionPooling,
        })
      : undefined;
  const resolvedPool = ownedPool === undefined ? (pool as pg.Pool) : ownedPool.pool;
  if (ownedPool === undefined) hearNewClientErrors(resolvedPool);
  const clientConfig = ownConnectionConfig(connectionString === undefined ? resolvedPool.options : { connectionString });
  return {
    names,
    pool: resolvedPool,
    ownedPool,
    preparedStatements: preparedStatements ?? !pooling.transactionPooling,
    transactionPooling: pooling.transactionPooling,
    logger: resolvedLogger,
    emit,
    middlewares,
    customStats,
    gracefulTimeoutMs: gracefulTimeoutMs ?? 15_000,
    queryTimeoutMs: resolvedQueryTimeoutMs,
    renderError: (renderError as RenderError | undefined) ?? defaultRenderError,
    listen: pooling.listen,
    notify: notify ?? 'after-commit',
    schemas,
    clientConfig,
    listenClientConfig:
      pooling.listenConnectionString === undefined
        ? clientConfig
        : ownConnectionConfig({ connectionString: pooling.listenConnectionString }),
  };
}
