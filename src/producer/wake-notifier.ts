import pg from 'pg';

import { errorMessage } from '../errors.js';
import { beforeDeadline, CLOSE_TIMEOUT_MS } from '../util/deadline.js';
import type { Logger } from '../util/logger.js';
import { endWithin } from '../util/owned-pool.js';
import { statement } from '../util/statement.js';

/** At most one NOTIFY statement per this many ms per Outbox; the first of a quiet spell goes at once. */
export const NOTIFY_MIN_INTERVAL_MS = 1;
/** After a failed statement, wake-ups are dropped (polling delivers) for this long, then it reconnects. */
export const RECONNECT_PAUSE_MS = 1_000;
/**
 * A NOTIFY statement that has not answered by then is abandoned and its connection destroyed: a
 * half-open connection would otherwise hold the notifier in `sending` forever, silently dropping
 * every later wake-up. Also the connect timeout when the pool's config sets none.
 */
export const STATEMENT_TIMEOUT_MS = 5_000;

/**
 * $1 channel, $2 payloads (text[]): one notification each, in one implicit transaction that
 * commits without waiting for its WAL flush (a lost notification is a late wake-up, not a lost
 * row; also the hand-over of a stopping consumer's retries: subscriber/consumer-signals.ts). `set_config(…, true)` is local to that transaction
 * (an InitPlan, evaluated once), never a session `SET`: behind PgBouncer in transaction mode a
 * session setting would stay on a server connection that other clients' transactions then use.
 */
export const WAKE = statement(
  'wake',
  `SELECT pg_notify($1::text, q) FROM unnest($2::text[]) AS q WHERE (SELECT set_config('synchronous_commit', 'off', true)) = 'off'`,
);

export interface WakeNotifierOptions {
  /** How to open the notifier's own connection (outside the pool): the same server and credentials as the pool. */
  readonly clientConfig: pg.ClientConfig;
  readonly channel: string;
  readonly logger: Logger;
  /**
   * Hands a payload to this Outbox's own subscriptions at once, before any NOTIFY: they are in this
   * process, so they need no round trip through the server. Their LISTEN then skips what this
   * notifier sends (`backendPid`).
   */
  readonly signalLocal?: (payload: string) => void;
  /** false behind PgBouncer in transaction mode (< 1.21): the statement is sent unnamed. */
  readonly preparedStatements: boolean;
  /** @default NOTIFY_MIN_INTERVAL_MS */
  readonly minIntervalMs?: number;
  /** @default STATEMENT_TIMEOUT_MS (tests shorten it) */
  readonly statementTimeoutMs?: number;
}

/** A payload for a log line: its control characters (channel-signal.ts) as visible marks. */
function readable(payload: string): string {
  return payload.replaceAll('\u0001', '|');
}

interface Socket {
  ref?: () => unknown;
  unref?: () => unknown;
  destroy?: () => unknown;
}

/** The socket under a node-postgres client: unref'd while idle (never keeps the process alive), destroyed when hung. */
function socketOf(client: pg.Client | undefined): Socket | undefined {
  return (client as { connection?: { stream?: Socket } } | undefined)?.connection?.stream;
}

/** Ends a client without waiting on a peer that may never answer (half-open, or still connecting). */
function destroy(client: pg.Client): void {
  socketOf(client)?.destroy?.();
  client.end().catch(() => undefined);
}

/**
 * Sends `pg_notify(channel, payload)` for rows that committed (decision 0004): their queue, or a
 * delayed row's announcement of when it is due (queues/channel-signal.ts), from one connection of
 * its own opened on first use, each statement committing with `synchronous_commit =
 * off`: a notification is delivered when its transaction commits, and losing one in a server
 * crash only costs a poll interval, so the notifier never waits for a WAL flush and holds
 * PostgreSQL's notify lock only for the instant of its own commit — instead of every publisher
 * holding it through theirs.
 *
 * States (`#state`):
 *   idle     nothing pending; the connection (if open) does not keep the process alive
 *   sending  one statement in flight; requests arriving meanwhile wait in a set (deduplicated by
 *            payload) and leave together in the next statement, no sooner than minIntervalMs after
 *            the previous one → idle when the set is empty
 *   stopped  requests are ignored; the connection is closed
 * A failed connection or statement is logged (the error's message: node-postgres never puts the
 * password there), its wake-ups are dropped, and requests are ignored for RECONNECT_PAUSE_MS; the
 * next request after that reconnects. A connection that dies while idle is logged and replaced on
 * the next request. NOTIFY stays a latency hint: polling finds every row the notifier missed.
 */
export class WakeNotifier {
  readonly #options: WakeNotifierOptions;
  readonly #minIntervalMs: number;
  readonly #pending = new Set<string>();
  #state: 'idle' | 'sending' | 'stopped' = 'idle';
  #drained: Promise<void> = Promise.resolve();
  #client: pg.Client | undefined;
  /** A connection being opened: stop() must be able to abandon it too. */
  #connecting: pg.Client | undefined;
  #lastSentAt = Number.NEGATIVE_INFINITY;
  #pausedUntil = 0;

  readonly #clientConfig: pg.ClientConfig;

  constructor(options: WakeNotifierOptions) {
    this.#options = options;
    const timeoutMs = options.statementTimeoutMs ?? STATEMENT_TIMEOUT_MS;
    this.#clientConfig = {
      ...options.clientConfig,
      connectionTimeoutMillis: options.clientConfig.connectionTimeoutMillis ?? timeoutMs,
      query_timeout: timeoutMs,
      keepAlive: true,
    };
    this.#minIntervalMs = options.minIntervalMs ?? NOTIFY_MIN_INTERVAL_MS;
  }

  /** After stop(): publishes fall back to pg_notify inside their own transaction. */
  get stopped(): boolean {
    return this.#isStopped();
  }

  /**
   * The server process of the notifier's connection, while it has one: its notifications carry
   * this pid, so this Outbox's LISTEN can tell them from other processes' and skip them (the
   * subscriptions they would wake were woken by `signalLocal` already).
   */
  get backendPid(): number | undefined {
    return (this.#client as { processID?: number | null } | undefined)?.processID ?? undefined;
  }

  /** A method, not a field read, so TypeScript does not narrow the state across awaits. */
  #isStopped(): boolean {
    return this.#state === 'stopped';
  }

  /**
   * Hands `payload` (a queue, or a delayed row's announcement) to this process's subscriptions now
   * and asks for one NOTIFY of it soon, for the
   * other processes'. Never throws, never waits. Called only once the row is committed.
   */
  request(payload: string): void {
    this.#signalLocal(payload);
    if (this.#isStopped() || performance.now() < this.#pausedUntil) return;
    this.#pending.add(payload);
    if (this.#state === 'sending') return;
    this.#state = 'sending';
    // #drain handles its own failures; the catch only guards against a logger that throws.
    this.#drained = this.#drain().catch(() => undefined);
  }

  async #drain(): Promise<void> {
    try {
      while (this.#pending.size > 0 && !this.#isStopped()) {
        const wait = this.#lastSentAt + this.#minIntervalMs - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        if (this.#isStopped()) break;
        const payloads = [...this.#pending];
        this.#pending.clear();
        this.#lastSentAt = performance.now();
        await this.#send(payloads);
      }
    } finally {
      // No await between the loop's last check and here: a request() arriving later starts a new drain.
      if (!this.#isStopped()) this.#state = 'idle';
      socketOf(this.#client)?.unref?.();
    }
  }

  async #send(payloads: string[]): Promise<void> {
    try {
      const client = this.#client ?? (await this.#connect());
      socketOf(client)?.ref?.();
      const values = [this.#options.channel, payloads];
      await client.query(
        this.#options.preparedStatements ? { name: WAKE.name, text: WAKE.text, values } : { text: WAKE.text, values },
      );
    } catch (error) {
      if (this.#isStopped()) return;
      this.#pending.clear();
      this.#pausedUntil = performance.now() + RECONNECT_PAUSE_MS;
      // A timed-out statement's connection may be half-open: destroy it rather than wait on end().
      const client = this.#client;
      this.#client = undefined;
      if (client !== undefined) destroy(client);
      this.#warn(
        {
          channel: this.#options.channel,
          err: errorMessage(error),
          payloads: payloads.map(readable),
          retryInMs: RECONNECT_PAUSE_MS,
        },
        'wake-up NOTIFY failed; subscribers find these rows by polling, and the notifier reconnects',
      );
    }
  }

  async #connect(): Promise<pg.Client> {
    const client = new pg.Client(this.#clientConfig);
    // An 'error' event without a listener would crash the process (a connection killed while idle).
    client.on('error', (error) => {
      this.#onConnectionError(client, error);
    });
    client.on('end', () => {
      if (this.#client === client) this.#client = undefined;
    });
    this.#connecting = client;
    try {
      await client.connect();
    } catch (error) {
      destroy(client);
      throw error;
    } finally {
      this.#connecting = undefined;
    }
    if (this.#isStopped()) {
      await client.end().catch(() => undefined);
      throw new Error('the notifier stopped while connecting');
    }
    this.#client = client;
    return client;
  }

  #onConnectionError(client: pg.Client, error: unknown): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    client.end().catch(() => undefined);
    // While a statement is in flight it fails too, and #send logs it once.
    if (this.#isStopped() || this.#state === 'sending') return;
    this.#warn(
      { channel: this.#options.channel, err: errorMessage(error) },
      'wake-up NOTIFY connection lost while idle; the next wake-up reconnects',
    );
  }

  #signalLocal(payload: string): void {
    try {
      this.#options.signalLocal?.(payload);
    } catch (error) {
      // request() runs inside the caller's COMMIT handling: nothing may escape into it. (The
      // Outbox's own LISTEN skips this notifier's NOTIFY, so polling is what is left.)
      this.#warn(
        { payload: readable(payload), err: errorMessage(error) },
        'waking local subscriptions failed; polling finds the row',
      );
    }
  }

  /** A logger that throws must not turn a dropped wake-up into a crashed process. */
  #warn(fields: Record<string, unknown>, message: string): void {
    try {
      this.#options.logger.warn(fields, message);
    } catch {
      // nothing left to tell
    }
  }

  async #closeClient(ms: number): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    if (client !== undefined) await endWithin(client, ms);
  }

  /**
   * Drops what is pending, abandons a connection still opening, waits for the statement in flight,
   * closes the connection: within CLOSE_TIMEOUT_MS in all. Idempotent.
   */
  async stop(): Promise<void> {
    this.#state = 'stopped';
    this.#pending.clear();
    if (this.#connecting !== undefined) destroy(this.#connecting);
    await beforeDeadline(this.#drained, CLOSE_TIMEOUT_MS / 2, () => undefined);
    await this.#closeClient(CLOSE_TIMEOUT_MS / 2);
  }
}
