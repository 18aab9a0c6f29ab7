import pg from 'pg';

import { errorMessage } from '../errors.js';
import { quoteIdent } from '../schema/identifiers.js';
import { backoffMs } from '../util/backoff.js';
import { beforeDeadline, CLOSE_TIMEOUT_MS } from '../util/deadline.js';
import type { Logger } from '../util/logger.js';
import { endWithin } from '../util/owned-pool.js';
import { Wakeup } from '../util/wakeup.js';

export interface ListenerOptions {
  /** How to open the dedicated connection (outside the pool). */
  readonly clientConfig: pg.ClientConfig;
  readonly channel: string;
  readonly logger: Logger;
  /**
   * Called with each payload (a queue, or a signal: queues/channel-signal.ts), or undefined after a
   * (re)connect: wake everyone, notifications may have been missed.
   */
  readonly onWake: (payload: string | undefined) => void;
  /**
   * Run on the connection after each LISTEN succeeded, for what notifications sent before it
   * would have said (the Outbox reads which queues are paused, and when their delayed rows come
   * due). On this connection, not the pool's: no other connection is opened for it. Must not throw.
   */
  readonly afterListen?: (client: pg.ClientBase) => Promise<void>;
  /** @default 30000 */
  readonly healthCheckIntervalMs?: number;
  /**
   * The server process whose notifications to skip: this Outbox's own notifier, whose wake-ups
   * reached this process's subscriptions before they were sent (WakeNotifier's `signalLocal`).
   */
  readonly ownNotifierPid?: () => number | undefined;
}

/**
 * Set once per connection, before LISTEN (LISTEN and SELECT 1 take no table locks; afterListen's
 * reads do): behind a migration's lock they fail after 2 s on the server, and a slow one after
 * 4 s, before the client's 5 s query_timeout, which would leave the statement running there and
 * the connection's next statements (the health check) stuck behind it.
 */
const READ_TIMEOUTS = "SET lock_timeout = '2s'; SET statement_timeout = '4s'";

/** Longest pause between reconnect attempts. */
export const MAX_RECONNECT_BACKOFF_MS = 30_000;
const HEALTH_CHECK_TIMEOUT_MS = 5_000;

/**
 * The one LISTEN connection of an Outbox, shared by all its subscriptions (payload: a queue, or a
 * signal: queues/channel-signal.ts).
 *
 * States:
 *   connecting  opening the connection and sending LISTEN
 *   listening   notifications flow; a `SELECT 1` every healthCheckIntervalMs (5 s timeout) proves
 *               the connection is alive (a half-open TCP connection would otherwise look fine)
 *   backoff     the connection failed; polling carries delivery meanwhile; reconnect after an
 *               exponential pause (capped at 30 s) that restarts from 500 ms once a connection
 *               got as far as LISTEN
 *   stopped
 * NOTIFY is a latency hint, never a correctness mechanism: notifications sent while reconnecting
 * are lost, so every (re)connect wakes every subscription once.
 */
export class NotifyListener {
  readonly #options: ListenerOptions;
  readonly #wakeup = new Wakeup();
  #state: 'connecting' | 'listening' | 'backoff' | 'stopped' = 'stopped';
  #client: pg.Client | undefined;
  #loop: Promise<void> | undefined;

  constructor(options: ListenerOptions) {
    this.#options = options;
  }

  get listening(): boolean {
    return this.#state === 'listening';
  }

  start(): void {
    if (this.#loop !== undefined) return;
    this.#state = 'connecting';
    this.#loop = this.#run();
  }

  /** Within `ms`: half to close the connection, half for the loop to see it (a connect in flight is left to fail). */
  async stop(ms = CLOSE_TIMEOUT_MS): Promise<void> {
    this.#state = 'stopped';
    this.#wakeup.notify();
    await this.#closeClient(ms / 2);
    await beforeDeadline(this.#loop ?? Promise.resolve(), ms / 2, () => undefined);
  }

  /** A method, not a field read, so TypeScript does not narrow the state across awaits. */
  #stopped(): boolean {
    return this.#state === 'stopped';
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#stopped()) {
      this.#state = 'connecting';
      try {
        // The backoff restarts once a connection got as far as LISTEN: a connection that served
        // for hours and then dropped reconnects after ~500 ms, not after the pause its
        // predecessors' failures had built up.
        await this.#listenUntilFailure(() => {
          failures = 0;
        });
      } catch (error) {
        if (this.#stopped()) break;
        failures += 1;
        this.#options.logger.warn(
          { channel: this.#options.channel, err: errorMessage(error), attempt: failures },
          'LISTEN connection failed; polling continues and the listener reconnects',
        );
      }
      await this.#closeClient();
      if (this.#stopped()) break;
      this.#state = 'backoff';
      await this.#wakeup.sleep(backoffMs(Math.max(1, failures), 500, MAX_RECONNECT_BACKOFF_MS));
    }
  }

  /**
   * Resolves or rejects when the connection ends; only returns normally on stop(). Calls
   * `onListening` once LISTEN succeeded.
   */
  async #listenUntilFailure(onListening: () => void): Promise<void> {
    // Every statement on this connection (LISTEN, the health check) fails instead of waiting on a
    // half-open socket; the connect is bounded by clientConfig's connectionTimeoutMillis.
    const client = new pg.Client({ ...this.#options.clientConfig, query_timeout: HEALTH_CHECK_TIMEOUT_MS });
    this.#client = client;
    const ended = new Promise<never>((_, reject) => {
      client.on('error', reject);
      client.on('end', () => {
        reject(new Error('LISTEN connection ended'));
      });
    });
    // Keep the rejection from being unhandled while we are still connecting.
    ended.catch(() => undefined);
    client.on('notification', (message) => {
      if (message.channel !== this.#options.channel) return;
      if (message.processId === this.#options.ownNotifierPid?.()) return;
      this.#options.onWake(message.payload);
    });
    await client.connect();
    await client.query(READ_TIMEOUTS);
    await client.query(this.#listen);
    if (this.#stopped()) return;
    this.#state = 'listening';
    onListening();
    this.#options.onWake(undefined);
    const { afterListen } = this.#options;
    if (afterListen !== undefined) await this.#read(client, afterListen);
    const interval = this.#options.healthCheckIntervalMs ?? 30_000;
    for (;;) {
      try {
        await Promise.race([ended, this.#wakeup.sleep(interval)]);
      } finally {
        // When the connection ended first, the sleep is still pending: end it, or its timer (up
        // to healthCheckIntervalMs) would keep the process alive after stop().
        this.#wakeup.cancel();
      }
      if (this.#stopped()) return;
      await this.#healthCheck(client);
    }
  }

  /**
   * Runs `read` on the connection if it listens (what it reads is then either seen or notified);
   * otherwise nothing: a reconnect runs afterListen. Its statements are bounded as the health
   * check is, and `read` must not throw.
   */
  async whileListening(read: (client: pg.ClientBase) => Promise<void>, options: { readonly last?: boolean } = {}): Promise<void> {
    const client = this.#client;
    if (this.#state !== 'listening' || client === undefined) return;
    try {
      // `last`: the connection closes next; nobody looks for its LISTEN any more.
      await (options.last === true ? read(client) : this.#read(client, read));
    } catch {
      // The connection failed: its loop sees it, reconnects and runs afterListen.
    }
  }

  get #listen(): string {
    return `LISTEN ${quoteIdent(this.#options.channel)}`;
  }

  async #read(client: pg.Client, read: (client: pg.ClientBase) => Promise<void>): Promise<void> {
    await read(client);
    // Again (a no-op for the server): pg_stat_activity shows a connection's last statement, and
    // the bench and the tests find this connection by its LISTEN (until the first health check).
    await client.query(this.#listen);
  }

  /** Bounded by the client's query_timeout (HEALTH_CHECK_TIMEOUT_MS): a half-open connection fails it. */
  async #healthCheck(client: pg.Client): Promise<void> {
    await client.query('SELECT 1');
  }

  async #closeClient(ms = CLOSE_TIMEOUT_MS): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    if (client === undefined) return;
    client.removeAllListeners('notification');
    await endWithin(client, ms);
  }
}
