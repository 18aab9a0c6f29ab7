import { Counter, type Registry } from 'prom-client';

import type { DeadLetters } from '../dlq/dead-letters.js';
import { errorMessage } from '../errors.js';
import { beforeDeadline } from '../util/deadline.js';
import { formatDurationMs } from '../util/duration.js';
import type { Logger } from '../util/logger.js';

/**
 * Once an hour: a dead letter is deleted at most about an hour after it passes the line, and a run
 * that finds nothing costs one scan of the DLQ (about half a second on a million rows, BENCHMARKS.md)
 * per hour.
 */
export const RETENTION_INTERVAL_MS = 3_600_000;
/** The first run: shortly after start, once the children are forked, not an hour later. */
export const RETENTION_FIRST_RUN_DELAY_MS = 2_000;
/**
 * How long stop() waits for a run in flight. The run stops before its next batch at once; the batch
 * itself is one statement, bounded by the Outbox's queryTimeoutMs, and commits or rolls back whole.
 */
export const RETENTION_STOP_TIMEOUT_MS = 5_000;

export interface DlqRetentionOptions {
  /** The parent's own Outbox's `dlq`. */
  readonly dlq: DeadLetters;
  /** The DLQ table, as the metric's `table` label and in the log lines. */
  readonly table: string;
  readonly maxAgeMs: number;
  readonly registry: Registry;
  readonly prefix: string;
  readonly logger: Logger;
  /** @default RETENTION_INTERVAL_MS */
  readonly intervalMs?: number;
  /** @default RETENTION_FIRST_RUN_DELAY_MS */
  readonly firstRunDelayMs?: number;
  /** @default RETENTION_STOP_TIMEOUT_MS */
  readonly stopTimeoutMs?: number;
}

/**
 * States: idle → waiting (start: a timer for the next run) → running (the timer fired: one
 * enforceRetention call) → waiting (the run ended, ok or failed: the next timer is armed only now, so
 * runs never overlap, however long one takes) … → stopped (stop(), from any state; terminal). In
 * running, stop() aborts the call before its next batch and waits at most stopTimeoutMs for it.
 *
 * Several runners on one database may enforce the same retention at once: the purge is idempotent
 * and SKIP LOCKED, so each row is deleted by one of them (architecture/runner.md, DLQ retention).
 */
export class DlqRetention {
  readonly #options: DlqRetentionOptions;
  readonly #purged: Counter;
  readonly #failures: Counter;
  readonly #abort = new AbortController();
  #state: 'idle' | 'waiting' | 'running' | 'stopped' = 'idle';
  #timer: NodeJS.Timeout | undefined;
  #run: Promise<void> | undefined;

  constructor(options: DlqRetentionOptions) {
    this.#options = options;
    this.#purged = new Counter({
      name: `${options.prefix}_dlq_retention_purged_total`,
      help: 'Dead letters deleted by the runner because they were older than dlqRetention, by DLQ table.',
      labelNames: ['table'],
      registers: [options.registry],
    });
    this.#failures = new Counter({
      name: `${options.prefix}_dlq_retention_failures_total`,
      help: 'Retention runs that ended with an error (logged; the next run is an interval later), by DLQ table.',
      labelNames: ['table'],
      registers: [options.registry],
    });
    // Both series exist from the start at 0, so rate() and absent() alerts work before the first run.
    this.#purged.inc({ table: options.table }, 0);
    this.#failures.inc({ table: options.table }, 0);
  }

  start(): void {
    if (this.#state !== 'idle') return;
    this.#schedule(this.#options.firstRunDelayMs ?? RETENTION_FIRST_RUN_DELAY_MS);
  }

  /** Resolves once no run is in flight, or after stopTimeoutMs with a warning. Idempotent. */
  async stop(): Promise<void> {
    const wasRunning = this.#state === 'running';
    this.#state = 'stopped';
    clearTimeout(this.#timer);
    this.#abort.abort(new Error('the runner is stopping'));
    if (!wasRunning || this.#run === undefined) return;
    const timeoutMs = this.#options.stopTimeoutMs ?? RETENTION_STOP_TIMEOUT_MS;
    await beforeDeadline(this.#run, timeoutMs, () => {
      this.#options.logger.warn(
        { table: this.#options.table, deadlineMs: timeoutMs },
        'dlq retention: a purge batch was still running at stop; not waiting for it (it commits or rolls back whole)',
      );
    });
  }

  #schedule(delayMs: number): void {
    this.#state = 'waiting';
    this.#timer = setTimeout(() => {
      this.#state = 'running';
      this.#run = this.#enforce().finally(() => {
        if (this.#state === 'running') this.#schedule(this.#options.intervalMs ?? RETENTION_INTERVAL_MS);
      });
    }, delayMs);
    // A pending run never keeps the process alive: stop() clears it, and nothing else should wait for it.
    this.#timer.unref();
  }

  async #enforce(): Promise<void> {
    const { dlq, table, maxAgeMs, logger } = this.#options;
    const started = Date.now();
    let purged = 0;
    try {
      const result = await dlq.enforceRetention(maxAgeMs, {
        signal: this.#abort.signal,
        // Counted per batch: a long first run on a big backlog shows its progress on /metrics.
        onBatch: (rows) => {
          purged += rows;
          this.#purged.inc({ table }, rows);
        },
      });
      const fields = {
        table,
        purged,
        retention: formatDurationMs(maxAgeMs),
        failedBefore: result.failedBefore.toISOString(),
        durationMs: Date.now() - started,
        // Past the line, still there: another redrive or purge was moving them (the next run takes them).
        remaining: result.remaining,
      };
      if (purged > 0 || result.remaining > 0) logger.info(fields, 'dlq retention: purged dead letters older than the retention');
      else logger.debug(fields, 'dlq retention: nothing older than the retention');
    } catch (error) {
      if (this.#abort.signal.aborted) {
        logger.info({ table, purged }, 'dlq retention: run stopped by the runner stopping (the rest is purged next time)');
        return;
      }
      this.#failures.inc({ table });
      logger.error(
        { table, purged, err: errorMessage(error), nextRunInMs: this.#options.intervalMs ?? RETENTION_INTERVAL_MS },
        'dlq retention failed; the rows it did not reach are purged by the next run',
      );
    }
  }
}
