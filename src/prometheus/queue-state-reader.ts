import { performance } from 'node:perf_hooks';

import type { OutboxInternals } from '../outbox.js';
import { type QueueState, readQueueStates } from '../queues/queue-state.js';
import { buildQueueStateSql, type QueueStateSql } from '../queues/queue-state-sql.js';
import { StatementRunner } from '../util/statement-runner.js';

export type QueueStateSnapshot =
  | { readonly ok: true; readonly queues: readonly QueueState[]; readonly durationSeconds: number }
  | { readonly ok: false; readonly error: unknown; readonly durationSeconds: number };

export interface QueueStateReaderOptions {
  readonly cacheMs: number;
  readonly exactCountLimit: number;
  readonly maxQueues: number;
  readonly statementTimeoutMs: number;
  /** How long a drained queue keeps reading 0 before it is dropped from the series. */
  readonly forgetEmptyAfterMs: number;
  /** Milliseconds on a monotonic clock (tests move time by hand). @default performance.now */
  readonly clock?: () => number;
}

/**
 * Reads the queue state of one Outbox, at most once per `cacheMs`: scrapes inside that window,
 * and concurrent ones (Prometheus HA pairs, a dashboard refresh), share one query and its result.
 * read() never rejects — a database error is a `{ ok: false }` snapshot, cached like any other,
 * so a failing database is asked once per window, not once per metric or per scrape.
 */
export class QueueStateReader {
  readonly #outbox: () => OutboxInternals;
  readonly #options: QueueStateReaderOptions;
  readonly #sql: QueueStateSql;
  /**
   * Queues of the last read that had rows, or had them less than forgetEmptyAfterMs ago, with when
   * they were last seen with rows. A drained queue keeps reading 0 for that long (a dashboard shows
   * the drain, not a series frozen at its last depth), then goes: remembering every queue ever seen
   * made the list grow until new queues no longer fit (issue 13, item 10). At most maxQueues
   * entries. The queues the Outbox subscribes to are always asked for.
   */
  #lastSeenWithRows = new Map<string, number>();
  readonly #clock: () => number;
  #cached: { at: number; snapshot: QueueStateSnapshot } | undefined;
  #inFlight: Promise<QueueStateSnapshot> | undefined;

  constructor(outbox: () => OutboxInternals, options: QueueStateReaderOptions) {
    this.#outbox = outbox;
    this.#options = options;
    this.#sql = buildQueueStateSql(outbox().names);
    this.#clock = options.clock ?? (() => performance.now());
  }

  read(): Promise<QueueStateSnapshot> {
    if (this.#inFlight !== undefined) return this.#inFlight;
    const cached = this.#cached;
    if (cached !== undefined && performance.now() - cached.at < this.#options.cacheMs) return Promise.resolve(cached.snapshot);
    // The window starts when the result arrives, so a slow query is never re-issued back to back.
    const inFlight = this.#timed().then((snapshot) => {
      this.#cached = { at: performance.now(), snapshot };
      this.#inFlight = undefined;
      return snapshot;
    });
    this.#inFlight = inFlight;
    return inFlight;
  }

  async #timed(): Promise<QueueStateSnapshot> {
    const started = performance.now();
    try {
      const queues = await this.query();
      return { ok: true, queues, durationSeconds: (performance.now() - started) / 1000 };
    } catch (error) {
      return { ok: false, error, durationSeconds: (performance.now() - started) / 1000 };
    }
  }

  /** One uncached read (measure-queue-state.ts times this). Rejects on a database error. */
  async query(): Promise<QueueState[]> {
    const { pool, stopped, subscribedQueues } = this.#outbox();
    if (stopped) throw new Error('the Outbox was stopped');
    const now = this.#clock();
    const remembered = [...this.#lastSeenWithRows]
      .filter(([, seen]) => now - seen < this.#options.forgetEmptyAfterMs)
      .map(([queue]) => queue);
    // Checkout and every statement bounded on the client too (statementTimeoutMs is the server's
    // bound, which a half-open connection never reports): a read stuck there would hold the
    // shared in-flight read, and with it every later scrape, forever.
    const statements = new StatementRunner(pool, false, this.#options.statementTimeoutMs);
    // A failed read drops its connection (the transaction is aborted): the Outbox's pool never
    // gets back a client its next user would trip over.
    return await statements.withClient(async (client) => {
      await client.query(statements.bounded({ text: this.#sql.begin(this.#options.statementTimeoutMs) }));
      const queues = await readQueueStates(client, statements, this.#sql, {
        exactCountLimit: this.#options.exactCountLimit,
        maxQueues: this.#options.maxQueues,
        alwaysReport: [...subscribedQueues, ...remembered],
      });
      await client.query(statements.bounded({ text: 'COMMIT' }));
      this.#remember(queues, now);
      return queues;
    });
  }

  #remember(queues: readonly QueueState[], now: number): void {
    const next = new Map<string, number>();
    for (const q of queues) {
      const seen = q.ready + q.scheduled + q.leased + (q.dlq ?? 0) > 0 ? now : this.#lastSeenWithRows.get(q.queue);
      if (seen !== undefined) next.set(q.queue, seen);
    }
    this.#lastSeenWithRows = next;
  }
}
