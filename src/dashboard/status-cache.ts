import { performance } from 'node:perf_hooks';

import type { QueueStatusReport, StatusOptions } from '../queues/queue-status.js';

interface Entry {
  readonly result: Promise<QueueStatusReport>;
  /** When the read settled (the window starts then); undefined while it is in flight. */
  settledAt: number | undefined;
}

/**
 * status() reads shared between the dashboard's requests, the pattern of the Prometheus
 * queue-state reader (src/prometheus/queue-state-reader.ts): status() is the dashboard's expensive
 * query (~430 ms on 20 queues of 500 pending rows and 100,000 dead letters), and every open tab
 * asks for it each refreshIntervalMs. Requests asking the same question (the same queues and
 * minutes) share the read in flight, and its result for `ttlMs` after it arrived — the window starts
 * when the result arrives, so a slow read is never re-issued back to back. A failed read is kept
 * for the same short window: a failing database is asked once per window, not once per tab, and
 * each request of that window answers with the one error (a 500 page naming it).
 *
 * invalidate() drops everything, the reads in flight included (they finish, but nobody joins them
 * and their result is not kept): a pause or resume through the dashboard redirects to a page that
 * must show the new state, not the one read a moment before.
 */
export class StatusCache {
  readonly #read: (options: StatusOptions) => Promise<QueueStatusReport>;
  readonly #ttlMs: number;
  readonly #clock: () => number;
  /** By question; an entry goes once its window is over (pruned on the next read). */
  readonly #entries = new Map<string, Entry>();

  constructor(read: (options: StatusOptions) => Promise<QueueStatusReport>, ttlMs: number, clock = () => performance.now()) {
    this.#read = read;
    this.#ttlMs = ttlMs;
    this.#clock = clock;
  }

  read(options: StatusOptions): Promise<QueueStatusReport> {
    this.#prune();
    const key = JSON.stringify([options.queues ?? null, options.minutes ?? null, options.maxQueues ?? null]);
    const cached = this.#entries.get(key);
    if (cached !== undefined) return cached.result;
    const entry: Entry = { result: this.#read(options), settledAt: undefined };
    const settled = (): void => {
      entry.settledAt = this.#clock();
    };
    // Also marks the rejection handled here: each request awaiting `result` handles it again.
    entry.result.then(settled, settled);
    this.#entries.set(key, entry);
    return entry.result;
  }

  /** The next read of every question goes to the database (after a pause or resume). */
  invalidate(): void {
    this.#entries.clear();
  }

  #prune(): void {
    const now = this.#clock();
    for (const [key, entry] of this.#entries) {
      if (entry.settledAt !== undefined && now - entry.settledAt >= this.#ttlMs) this.#entries.delete(key);
    }
  }
}
