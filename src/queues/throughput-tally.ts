import { errorMessage } from '../errors.js';
import { beforeDeadline } from '../util/deadline.js';
import type { Logger } from '../util/logger.js';
import type { StatementRunner } from '../util/statement-runner.js';
import type { ThroughputSql } from './throughput-sql.js';

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

/**
 * Counts this process's outcomes per queue in memory (a Map increment on the delivery path) and
 * adds them to <table>_stats every STATS_FLUSH_MS in one statement, so `status()` and the
 * dashboard show throughput summed over every process, from any host. A failed flush keeps its
 * counts for the next one (logged once per failure streak): throughput is late, never lost while
 * the process lives (an add whose answer is lost after it committed is counted twice: these are
 * statistics, and asking the server would cost a statement per flush). stop() flushes what is left, bounded by the statement runner's timeout.
 */
export class ThroughputTally {
  readonly #db: StatementRunner;
  readonly #sql: ThroughputSql;
  readonly #logger: Logger;
  #counts = new Map<string, Counts>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> | undefined;
  #flushes = 0;
  #failing = false;

  constructor(db: StatementRunner, sql: ThroughputSql, logger: Logger) {
    this.#db = db;
    this.#sql = sql;
    this.#logger = logger;
  }

  count(queue: string, outcome: Outcome): void {
    this.#add(queue, outcome, 1);
  }

  #add(queue: string, outcome: Outcome, n: number): void {
    let counts = this.#counts.get(queue);
    if (counts === undefined) {
      counts = { handled: 0, retried: 0, deadLettered: 0 };
      this.#counts.set(queue, counts);
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
    if (this.#counts.size === 0) return;
    const taken = this.#counts;
    this.#counts = new Map();
    const queues = [...taken.keys()].sort();
    const column = (outcome: Outcome): number[] => queues.map((q) => taken.get(q)?.[outcome] ?? 0);
    try {
      await this.#db.run(this.#sql.add, [queues, column('handled'), column('retried'), column('deadLettered')]);
      this.#flushes += 1;
      if (this.#failing) this.#logger.info({}, 'queue throughput stats are written again');
      this.#failing = false;
    } catch (error) {
      // Back into the tally: the next flush adds them (with whatever came meanwhile).
      for (const [queue, counts] of taken) {
        for (const outcome of OUTCOMES) this.#add(queue, outcome, counts[outcome]);
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
