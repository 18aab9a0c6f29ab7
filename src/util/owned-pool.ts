import pg from 'pg';

import { errorMessage } from '../errors.js';
import { beforeDeadline } from './deadline.js';
import type { Logger } from './logger.js';

/** Longest wait for a new connection of the pools and clients txoutbox opens. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** Idle time before TCP keepalive probes start on txoutbox's own connections. */
export const KEEPALIVE_IDLE_MS = 10_000;

/**
 * The connection settings of every connection txoutbox opens itself (its pool, the LISTEN and the
 * NOTIFY connections): a connect that does not answer fails after CONNECT_TIMEOUT_MS (node-postgres
 * otherwise waits forever, and `end()` during a connect leaves it pending), and TCP keepalive finds
 * idle connections whose peer died. A statement in flight is bounded by queryTimeoutMs instead:
 * Node cannot shorten the kernel's probe interval, so keepalive alone takes minutes.
 */
export function ownConnectionConfig<C extends pg.ClientConfig>(config: C): C {
  return {
    ...config,
    connectionTimeoutMillis: config.connectionTimeoutMillis ?? CONNECT_TIMEOUT_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: config.keepAliveInitialDelayMillis ?? KEEPALIVE_IDLE_MS,
  };
}

/**
 * Every prepared statement of txoutbox's sessions is planned for each execution, for the table as
 * it is then. With Postgres' default ('auto') a statement switches to a cached generic plan after
 * five executions when that plan is no dearer — and on a tiny, analyzed outbox (a quiet spell) the
 * generic plans of the claim and the ack are sequential scans. When a backlog then lands (an
 * outage upstream, a DLQ redrive), every claim and ack scans the whole table until autoanalyze
 * replans: 1.3 s per claim and 0.8 s per ack at a million rows (subscriber-plan-cache.test.ts).
 * A custom plan sees the table's current size. It costs planning on each execution (about 0.3 ms
 * per claim, BENCHMARKS.md); the parse is still saved. Set per session as it connects
 * (TrackedClient.connect), not as a startup `options` parameter: a connection string's own
 * `options` would replace it.
 */
export const CUSTOM_PLANS = 'SET plan_cache_mode = force_custom_plan';

/** A pool txoutbox created from a connection string, and the bounded way to close it. */
export interface OwnedPool {
  readonly pool: pg.Pool;
  /**
   * `pool.end()`, but within `ms`: connections still busy then (a statement stuck behind a lock or
   * on a half-open socket; pool.end() waits for them) are destroyed, and their statements fail.
   */
  close(ms: number): Promise<void>;
}

/** See TrackedClient's constructor: the failed connect or statement is the report. */
function ignoreClientError(): void {
  // heard, not thrown
}

/**
 * The pool txoutbox creates from a connection string. Its sessions get `statement_timeout =
 * queryTimeoutMs`: the server cancels a statement that waits too long (behind a lock, on a server
 * that was frozen), so one the client stopped waiting for (StatementRunner, a second later) never
 * commits behind its back; a claim that did would lease rows nobody runs and count a delivery no
 * handler saw. A pool you pass in keeps its own settings (set statement_timeout on it too).
 *
 * `sessionSettings: false` (transactionPooling): neither the statement_timeout startup parameter
 * (PgBouncer refuses a connection that sends one it does not track: "unsupported startup
 * parameter: statement_timeout") nor the SET (a transaction pooler runs it on some server session,
 * where it stays for other clients, and ours run elsewhere). Both belong on the role then
 * (architecture/pgbouncer.md); the client-side bound (StatementRunner) still holds.
 */
export function createOwnedPool(
  connectionString: string,
  max: number,
  queryTimeoutMs: number,
  logger: Logger,
  { sessionSettings = true }: { readonly sessionSettings?: boolean } = {},
): OwnedPool {
  // Every connection the pool opens, connecting ones included, so close() can destroy those
  // pool.end() would wait for (or, still connecting to a silent server, leave to keep the process alive).
  const clients = new Set<pg.Client>();
  class TrackedClient extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      super(config);
      clients.add(this);
      this.once('end', () => clients.delete(this));
      // Heard for the client's whole life. A backend terminated as the connection became ready
      // (a deploy's or a failover's pg_terminate_backend) sends its FATAL in the same read as the
      // ReadyForQuery that completes the connect, and node-postgres emits it as 'error' at once,
      // before the pool (or whoever checks the client out) listens: unheard, an uncaught
      // exception that killed the process (chaos terminate-backends;
      // test/integration/owned-pool-connect-faults.test.ts). The connect, or the first statement
      // on the dead connection, fails instead, and that failure is what callers see and retry.
      this.on('error', ignoreClientError);
    }

    // The session is set up before the pool hands the connection out (a query sent from the
    // pool's 'connect' event would overlap the first checkout's).
    override connect(): Promise<pg.Client>;
    override connect(callback: ((err: Error) => void) | ((err: null, client: pg.Client) => void)): void;
    override connect(
      callback?: ((err: Error) => void) | ((err: null, client: pg.Client) => void),
    ): Promise<pg.Client> | undefined {
      const ready = super.connect().then(async () => {
        if (!sessionSettings) return this;
        // A connection that dies during the SET is heard (constructor) and fails it: the connect
        // fails, as it would had the connection died a moment earlier, and the pool's caller sees
        // a connection error (a stuck SET is ended by the pool's connect timeout).
        try {
          await this.query(CUSTOM_PLANS);
        } catch (error) {
          logger.warn({ err: errorMessage(error) }, `${CUSTOM_PLANS} failed on a new connection; the connection is dropped`);
          await this.end().catch(() => undefined);
          throw error;
        }
        return this;
      });
      if (callback === undefined) return ready;
      const done = callback as (err: Error | null, client?: pg.Client) => void;
      ready.then(
        (client) => {
          done(null, client);
        },
        (error: unknown) => {
          done(error instanceof Error ? error : new Error(String(error)));
        },
      );
      return undefined;
    }
  }
  const pool = new pg.Pool({
    ...ownConnectionConfig({ connectionString, max, ...(sessionSettings ? { statement_timeout: queryTimeoutMs } : {}) }),
    Client: TrackedClient,
  });
  // An idle client whose server connection dies emits 'error' on the pool; unhandled, that event
  // would crash the process. The client is discarded by the pool; the next checkout reconnects.
  pool.on('error', (error) => {
    logger.warn({ err: error.message }, 'idle database connection failed and was discarded');
  });
  return {
    pool,
    async close(ms) {
      const ended = await beforeDeadline(
        pool.end().then(() => true),
        ms,
        () => false,
      );
      if (ended) return;
      logger.warn({ connections: clients.size }, 'pool connections still busy at stop; destroying them');
      for (const client of clients) client.connection.stream.destroy();
    },
  };
}

/**
 * Closes one connection within `ms`: a polite `end()` first; past the deadline its socket is
 * destroyed, so a connection to a frozen or vanished server neither hangs its owner's stop() nor
 * keeps the process alive.
 */
export async function endWithin(client: pg.Client, ms: number): Promise<void> {
  const ended = await beforeDeadline(
    client.end().then(
      () => true,
      () => true,
    ),
    ms,
    () => false,
  );
  if (!ended) client.connection.stream.destroy();
}

/** Pools passed in whose new clients already get a listener (hearNewClientErrors), so each gets one. */
const HEARD_POOLS = new WeakSet<pg.Pool>();

/**
 * A pool passed in: each client it connects from now on gets a no-op 'error' listener for its
 * whole life, as a pool txoutbox creates gives its own (TrackedClient). pg-pool emits 'connect'
 * before it stops listening to the new client itself, in the same call as the ReadyForQuery that
 * completes the connect: a FATAL in the same read (a backend terminated as it became ready) is
 * then heard instead of crashing the process, and the connect or the first statement on it fails
 * as usual (reproduced: pg_terminate_backend of every backend, in a loop, under a subscription on
 * a pool of the test's: an uncaught "terminating connection due to administrator command" within
 * seconds). The application's own checkouts of those clients get the listener too: an error on a
 * client it holds while idle is then not thrown as an uncaught exception; its next statement fails.
 */
export function hearNewClientErrors(pool: pg.Pool): void {
  if (HEARD_POOLS.has(pool)) return;
  HEARD_POOLS.add(pool);
  pool.on('connect', (client) => {
    client.on('error', ignoreClientError);
  });
}

/**
 * A pool passed in keeps its own settings; says which safeguard against a silent server it lacks
 * (a pool txoutbox creates has all three). The Outbox calls it once, when its subscriptions start.
 */
export function warnAboutPoolSafeguards(pool: pg.Pool, queryTimeoutMs: number, logger: Logger): void {
  const { connectionTimeoutMillis, statement_timeout: statementTimeout, keepAlive } = pool.options;
  const missing = [
    ...((connectionTimeoutMillis ?? 0) > 0
      ? []
      : ['connectionTimeoutMillis (a connect to a silent server waits forever and keeps its pool slot)']),
    ...(typeof statementTimeout === 'number' && statementTimeout > 0
      ? []
      : [
          'statement_timeout (a statement txoutbox gave up on can still commit on the server: a claim then costs its rows a lease)',
        ]),
    ...(keepAlive === true ? [] : ['keepAlive: true (an idle connection whose peer died is found only when used)']),
  ];
  if (missing.length === 0) return;
  logger.warn(
    { queryTimeoutMs, missing },
    `the pool passed to the Outbox lacks ${missing.join('; ')}. txoutbox bounds its own statements by queryTimeoutMs either way; set these on the pool (statement_timeout = queryTimeoutMs)`,
  );
}

/**
 * A pool passed in keeps its sessions' settings: when they plan prepared statements the default
 * way, say what that risks (CUSTOM_PLANS) and how to set it, once. Off the claim path; a failed
 * check is only logged at debug level.
 */
export async function warnAboutGenericPlans(pool: pg.Pool, logger: Logger): Promise<void> {
  try {
    const { rows } = await pool.query<{ plan_cache_mode: string }>('SHOW plan_cache_mode');
    if (rows[0]?.plan_cache_mode !== 'auto') return;
    logger.warn(
      { plan_cache_mode: 'auto' },
      "the pool passed to the Outbox plans prepared statements with plan_cache_mode = auto: statements prepared while the outbox is small can keep plans that scan the whole table once a backlog arrives, until autoanalyze. Set it for these sessions: new pg.Pool({ …, options: '-c plan_cache_mode=force_custom_plan' }), or ALTER ROLE <role> SET plan_cache_mode = force_custom_plan, or pass preparedStatements: false",
    );
  } catch (error) {
    logger.debug({ err: errorMessage(error) }, 'could not read plan_cache_mode of the pool passed to the Outbox');
  }
}
