import pg from 'pg';

import { errorMessage } from '../errors.js';
import type { TableName } from '../schema/identifiers.js';
import { beforeDeadline, CLOSE_TIMEOUT_MS } from '../util/deadline.js';
import { KEEPALIVE_SETTINGS } from '../util/idle-bound.js';
import type { Logger } from '../util/logger.js';
import { endWithin } from '../util/owned-pool.js';
import { Wakeup } from '../util/wakeup.js';

/** Lock namespace of pg_try_advisory_lock(int4, int4): "txqs" as a 32-bit integer (migrations use "txob"). */
export const QUEUE_STATE_LOCK_NAMESPACE = 0x74787173;

/**
 * $1 = namespace, $2 = schema or NULL (current_schema()), $3 = table. The pid comes back with the
 * answer so the heartbeat can tell a real session from a transaction pooler (below).
 */
const TRY_LOCK = `SELECT pg_try_advisory_lock($1::int, hashtext(coalesce($2::text, current_schema()) || '.' || $3::text)) AS acquired,
  pg_backend_pid() AS pid`;
const HEARTBEAT = 'SELECT pg_backend_pid() AS pid';
/**
 * The server drops the session of a vanished leader host within ~25 s (KEEPALIVE_SETTINGS, for the
 * session), releasing the lock to a standby; PostgreSQL's default waits for the kernel's, often
 * two hours.
 */
const KEEPALIVES = `SELECT ${KEEPALIVE_SETTINGS.map(([name, value]) => `set_config('${name}', '${value}', false)`).join(', ')},
  pg_backend_pid() AS pid`;

export interface QueueStateLeaderOptions {
  /** How to open the dedicated session (the Outbox's LISTEN/NOTIFY connection settings). */
  readonly clientConfig: pg.ClientConfig;
  readonly table: TableName;
  /** How often a standby tries the lock and the leader checks its session. */
  readonly checkIntervalMs: number;
  readonly logger: Logger;
  /**
   * Whether what it reads for has ended (the collector's Outbox stopped). Checked at every tick: a
   * leader whose Outbox stopped can read nothing, and holding the lock on would leave every
   * standby idle, so nobody read the queue state (an application that stops its Outbox and forgets
   * the collector's close()). It then gives the lock up, as stop() does.
   */
  readonly ownerStopped?: () => boolean;
}

/**
 * Which of several processes reading one outbox's queue state reads it: the one holding a session
 * advisory lock keyed by the table, on a connection of its own (architecture/metrics.md, "One
 * reader per cluster"). When the holder dies its session ends and the lock goes with it.
 *
 * States:
 *   connecting  opening the session                     ok → standby; error → backoff
 *   standby     pg_try_advisory_lock every interval      acquired → leading; error → backoff
 *   leading     a pid check every interval (statement    error → backoff
 *               timeout: a half-open socket fails it)
 *   pooled      a statement ran on another server process than the session's first (standby or
 *               leading): a transaction pooler (PgBouncer) that cannot hold a session lock. This
 *               process reads at every scrape (leading() is true); terminal until stop
 *   backoff     the session failed; not leading; reconnect after one interval
 *   stopped     the session is closed, which releases the lock
 */
export class QueueStateLeader {
  readonly #options: QueueStateLeaderOptions;
  readonly #wakeup = new Wakeup();
  #state: 'connecting' | 'standby' | 'leading' | 'pooled' | 'backoff' | 'stopped' = 'stopped';
  #client: pg.Client | undefined;
  #loop: Promise<void> | undefined;
  #firstAttempt: Promise<void> | undefined;
  #attempted: () => void = () => undefined;

  constructor(options: QueueStateLeaderOptions) {
    this.#options = options;
  }

  /** Whether this process reads and exports the queue state: it holds the lock, or no lock can be held. */
  get leading(): boolean {
    return this.#state === 'leading' || this.#state === 'pooled';
  }

  start(): void {
    if (this.#loop !== undefined) return;
    this.#state = 'connecting';
    this.#firstAttempt = new Promise((resolve) => (this.#attempted = resolve));
    this.#loop = this.#run();
  }

  /** Resolves once the first try of the lock has an answer (or failed), so a first scrape sees its outcome. */
  async settled(): Promise<void> {
    await this.#firstAttempt;
  }

  /** Closes the session (the lock is released with it) within CLOSE_TIMEOUT_MS. Idempotent. */
  async stop(): Promise<void> {
    const wasLeading = this.#state === 'leading';
    this.#state = 'stopped';
    this.#attempted();
    this.#wakeup.notify();
    await this.#close();
    await beforeDeadline(this.#loop ?? Promise.resolve(), CLOSE_TIMEOUT_MS, () => undefined);
    if (wasLeading) this.#options.logger.info({ table: this.#options.table.display }, 'queue-state reader: leadership released');
  }

  #stopped(): boolean {
    if (this.#state !== 'stopped' && this.#options.ownerStopped?.() === true) {
      if (this.#state === 'leading')
        this.#options.logger.info(
          { table: this.#options.table.display },
          'queue-state reader: its Outbox stopped; leadership released',
        );
      this.#state = 'stopped';
      this.#attempted();
    }
    return this.#state === 'stopped';
  }

  async #run(): Promise<void> {
    let failing = false;
    while (!this.#stopped()) {
      try {
        await this.#session(() => {
          failing = false;
        });
      } catch (error) {
        if (this.#stopped()) break;
        const was = this.#state;
        this.#state = 'backoff';
        // Once per outage at warn: a database that is down for an hour is not news every 5 s.
        const fields = { table: this.#options.table.display, err: errorMessage(error), wasLeading: was === 'leading' };
        const message = 'queue-state reader: the leader-election session failed; not reading until it reconnects';
        if (failing) this.#options.logger.debug(fields, message);
        else this.#options.logger.warn(fields, message);
        failing = true;
      }
      this.#attempted();
      await this.#close();
      if (this.#stopped() || this.#state === 'pooled') break;
      await this.#wakeup.sleep(this.#options.checkIntervalMs);
    }
  }

  /** One session: try the lock until acquired, then watch it. Returns only on stop or once pooled. */
  async #session(connected: () => void): Promise<void> {
    const { clientConfig, table, checkIntervalMs, logger } = this.#options;
    const client = new pg.Client({ ...clientConfig, query_timeout: Math.min(10_000, Math.max(1_000, checkIntervalMs)) });
    this.#client = client;
    const ended = new Promise<never>((_, reject) => {
      client.on('error', reject);
      client.on('end', () => {
        reject(new Error('the session ended'));
      });
    });
    ended.catch(() => undefined);
    const query = async <R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R | undefined> =>
      (await Promise.race([client.query<R>(text, values), ended])).rows[0];
    await Promise.race([client.connect(), ended]);
    // Every statement returns the server process it ran on: on a real session it never changes.
    const sessionPid = (await query<{ pid: number }>(KEEPALIVES))?.pid;
    connected();
    while (!this.#stopped() && this.#state !== 'pooled') {
      let pid: number | undefined;
      if (this.#state !== 'leading') {
        this.#state = 'standby';
        const row = await query<{ acquired: boolean; pid: number }>(TRY_LOCK, [
          QUEUE_STATE_LOCK_NAMESPACE,
          table.schema ?? null,
          table.name,
        ]);
        pid = row?.pid;
        if (row?.acquired === true && pid === sessionPid && !this.#stopped()) {
          this.#state = 'leading';
          logger.info(
            { table: table.display },
            'queue-state reader: this process is the leader; it reads the queue state for every host',
          );
        }
      } else {
        pid = (await query<{ pid: number }>(HEARTBEAT))?.pid;
      }
      // Checked on standbys too: a standby whose tries land on other server processes than the
      // lock's would otherwise wait forever while nobody reads.
      if (pid !== sessionPid && !this.#stopped()) {
        this.#state = 'pooled';
        this.#attempted();
        logger.warn(
          { table: table.display, sessionPid, nowOn: pid },
          'queue-state reader: the server process changed under one connection (a transaction pooler such as PgBouncer): a session lock cannot elect a leader there, so this process reads the queue state at every scrape; give the runner a direct connection or set metrics.prometheus.queueStateLeader: false',
        );
        // A lock taken through the pooler stays with its server connection until that closes.
        return;
      }
      this.#attempted();
      await Promise.race([ended, this.#wakeup.sleep(checkIntervalMs)]).finally(() => {
        this.#wakeup.cancel();
      });
    }
  }

  async #close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    if (client === undefined) return;
    if (this.#state === 'leading') this.#state = 'backoff';
    await endWithin(client, CLOSE_TIMEOUT_MS);
  }
}
