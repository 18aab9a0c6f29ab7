import { performance } from 'node:perf_hooks';

import { errorMessage } from '../errors.js';
import { beforeDeadline } from '../util/deadline.js';
import type { Logger } from '../util/logger.js';
import type { StatementRunner } from '../util/statement-runner.js';
import { STATS_RETENTION_MINUTES, type ThroughputSql } from './throughput-sql.js';

/** What a delivery's outcome counts as in <table>_stats. */
export type Outcome = 'handled' | 'retried' | 'deadLettered';

const OUTCOMES: readonly Outcome[] = ['handled', 'retried', 'deadLettered'];

/** How often a process adds its counts to <table>_stats: status is at most this much behind. */
export const STATS_FLUSH_MS = 5_000;
/** Prune once per this many flushes (about a minute): the table holds queues × 60 rows. */
const PRUNE_EVERY_FLUSHES = 12;

interface Counts {
  handled: number;
  retried: number;
  deadLettered: number;
}

/** One minute of this process's clock: its counts per queue, and when its last outcome came. */
interface Bucket {
  lastAt: number;
  readonly queues: Map<string, Counts>;
}

/**
 * Counts older than this when a flush can write them are dropped: status() shows at most the
 * retention, and the next prune would delete them (a failing streak of hours kept a bucket a
 * minute, unbounded).
 */
const MAX_AGE_MS = (STATS_RETENTION_MINUTES + 1) * 60_000;

/**
 * Counts this process's outcomes per minute and queue in memory (Map increments on the delivery
 * path) and adds them to <table>_stats every STATS_FLUSH_MS in one statement, so `status()` and
 * the dashboard show throughput summed over every process, from any host. Each minute's counts go
 * with their age (since its last outcome, on this process's monotonic clock), and the statement
 * stamps them with the database's minute of now() - age: counts stamped with the flush's minute
 * put a failing streak's outcomes, given back and written late, all in one minute. A failed flush
 * keeps its counts for the next one (logged once per failure streak): throughput is late, never
 * lost while the process lives, up to the hour status() shows (an add whose answer is lost after
 * it committed is counted twice: these are statistics, and asking the server would cost a
 * statement per flush). stop() flushes what is left, bounded by the statement runner's timeout.
 */
export class ThroughputTally {
  readonly #db: StatementRunner;
  readonly #sql: ThroughputSql;
  readonly #logger: Logger;
  readonly #clock: () => number;
  /** By minute of #clock (its milliseconds / 60,000, rounded down). */
  #buckets = new Map<number, Bucket>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #flushes = 0;
  #failing = false;

  /** `clock`: milliseconds on a monotonic clock (tests move time by hand). */
  constructor(db: StatementRunner, sql: ThroughputSql, logger: Logger, clock: () => number = () => performance.now()) {
    this.#db = db;
    this.#sql = sql;
    this.#logger = logger;
    this.#clock = clock;
  }

  count(queue: string, outcome: Outcome): void {
    this.#add(queue, outcome, 1, this.#clock());
  }

  #add(queue: string, outcome: Outcome, n: number, at: number): void {
    const minute = Math.floor(at / 60_000);
    let bucket = this.#buckets.get(minute);
    if (bucket === undefined) {
      bucket = { lastAt: at, queues: new Map() };
      this.#buckets.set(minute, bucket);
    } else if (at > bucket.lastAt) {
      bucket.lastAt = at;
    }
    let counts = bucket.queues.get(queue);
    if (counts === undefined) {
      counts = { handled: 0, retried: 0, deadLettered: 0 };
      bucket.queues.set(queue, counts);
    }
    counts[outcome] += n;
    // Started by the first outcome: an Outbox that never consumes never writes.
    this.#timer ??= setInterval(() => void this.flush(), STATS_FLUSH_MS).unref();
  }

  /** Adds the counts so far to <table>_stats. Never rejects; one flush at a time. */
  flush(): Promise<void> {
    this.#flushing ??= this.#flush().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async #flush(): Promise<void> {
    if (this.#buckets.size === 0) return;
    const taken = this.#buckets;
    this.#buckets = new Map();
    const now = this.#clock();
    const queues: string[] = [];
    const ages: number[] = [];
    const columns: Record<Outcome, number[]> = { handled: [], retried: [], deadLettered: [] };
    for (const [minute, bucket] of taken) {
      const age = Math.max(0, now - bucket.lastAt);
      if (age > MAX_AGE_MS) {
        taken.delete(minute);
        continue;
      }
      for (const [queue, counts] of bucket.queues) {
        queues.push(queue);
        ages.push(age);
        for (const outcome of OUTCOMES) columns[outcome].push(counts[outcome]);
      }
    }
    if (queues.length === 0) return;
    try {
      await this.#db.run(this.#sql.add, [queues, ages, columns.handled, columns.retried, columns.deadLettered]);
      this.#flushes += 1;
      if (this.#failing) this.#logger.info({}, 'queue throughput stats are written again');
      this.#failing = false;
    } catch (error) {
      // Back into the tally, each in its minute: the next flush adds them (with whatever came meanwhile).
      for (const bucket of taken.values()) {
        for (const [queue, counts] of bucket.queues) {
          for (const outcome of OUTCOMES) this.#add(queue, outcome, counts[outcome], bucket.lastAt);
        }
      }
      if (!this.#failing) {
        this.#logger.warn(
          { err: errorMessage(error) },
          'could not write queue throughput stats (status and the dashboard show them late); retrying with the next flush',
        );
      }
      this.#failing = true;
      return;
    }
    // After the add, in a statement of its own: the counts are written, so a prune that fails must
    // not put them back (the next flush would add them twice). Old minutes stay until a later one.
    if (this.#flushes % PRUNE_EVERY_FLUSHES === 1) await this.#prune();
  }

  async #prune(): Promise<void> {
    try {
      await this.#db.run(this.#sql.prune, []);
    } catch (error) {
      this.#logger.warn(
        { err: errorMessage(error) },
        'could not drop queue throughput minutes older than the retention; trying again in about a minute',
      );
    }
  }

  /**
   * stop(), given at most `ms`: past it the last counts are given up with a warning (they are
   * statistics, not messages), so Outbox.stop() stays bounded when the database is not answering.
   */
  async stopWithin(ms: number): Promise<void> {
    await beforeDeadline(this.stop(), ms, () => {
      this.#logger.warn({}, 'the last queue throughput counts were not written before stop() had to close the pool');
    });
  }

  /** Stops the timer and flushes what is left (once the deliveries have ended). */
  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    await this.flush();
    // A flush started by the timer may have ended with counts put back: one more try.
    await this.flush();
  }
}
