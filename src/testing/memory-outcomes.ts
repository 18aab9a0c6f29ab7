import type { DeadLetter } from '../dlq/dead-letter-row.js';
import { exceptionTypeOf, type OutboxEvent, type TerminalReason } from '../instrumentation/events.js';
import type { OutcomeWrite } from '../instrumentation/middleware.js';
import type { Emit } from '../instrumentation/recorders.js';
import { deliveryScope, type Lease } from '../subscriber/lease.js';
import { NO_FAILURE_RECORDED, type OutcomeWriter, type Run } from '../subscriber/outcome-writer.js';
import { boundedLastException, type RenderError } from '../subscriber/render-error.js';
import type { Logger } from '../util/logger.js';
import type { TestClock } from './clock.js';
import { inspectRowBody, type MemoryRow, toDeadLetter } from './memory-row.js';
import type { MemoryTable } from './memory-table.js';

/** A delivery whose ack deleted its row. */
export interface AckedRecord {
  readonly messageId: string;
  readonly queue: string;
  readonly subscriber: string;
  readonly body: unknown;
  /** Claims of the row, this one included. */
  readonly deliveriesCount: number;
  /** Failed runs before the one that acked. */
  readonly attemptsCount: number;
  readonly at: Date;
}

/** A failed run that was rescheduled. */
export interface RetriedRecord {
  readonly messageId: string;
  readonly queue: string;
  readonly subscriber: string;
  /** The strategy's `attempt`: failed runs so far, this one included (1 after the first failure). */
  readonly attempt: number;
  /** The delay the strategy (or ctx.nack({ delayMs })) chose. */
  readonly delayMs: number;
  /** What the handler threw or passed to ctx.nack({ error }); undefined for a bare nack. */
  readonly error: unknown;
  readonly exceptionType: string | undefined;
  /** When the row is due again, by the test clock. */
  readonly nextAttemptAt: Date;
}

/** What the test outbox recorded of every outcome, in the order they were written. */
export interface OutcomeRecords {
  readonly acked: AckedRecord[];
  readonly retried: RetriedRecord[];
  /** As outbox.dlq.get() returns them, oldest first. */
  readonly deadLetters: DeadLetter[];
}

export interface MemoryOutcomesDeps {
  readonly table: MemoryTable;
  readonly clock: TestClock;
  readonly subscriber: string;
  readonly dlq: boolean;
  readonly emit: Emit;
  readonly renderError: RenderError;
  readonly logger: Logger;
  readonly records: OutcomeRecords;
  /** Draws the DLQ row's id. */
  readonly nextDeadLetterId: () => string;
}

/**
 * The OutcomeWriter of the test outbox: the same writes (src/subscriber/outcome-writer.ts and the
 * statements of src/subscriber/sql.ts) on the in-memory table, with the same events in the same
 * order. There is no lease expiry in memory, so no write is ever fenced off (no `lease_lost`);
 * an ack lands at once instead of in the next event-loop turn's batch.
 */
export class MemoryOutcomes implements Pick<OutcomeWriter, 'ack' | 'retry' | 'terminal'> {
  readonly #deps: MemoryOutcomesDeps;

  constructor(deps: MemoryOutcomesDeps) {
    this.#deps = deps;
  }

  #row(lease: Lease): MemoryRow {
    const row = this.#deps.table.get(Number(lease.record.id));
    if (row === undefined) throw new Error(`txoutbox/testing: row ${lease.record.id} left the table while leased`);
    return row;
  }

  ack(lease: Lease, durationSeconds: number, written?: (result: OutcomeWrite) => void): void {
    const row = this.#row(lease);
    this.#deps.table.delete(row.seq);
    this.#deps.records.acked.push({
      messageId: lease.record.id,
      queue: row.queue,
      subscriber: this.#deps.subscriber,
      body: inspectRowBody(row),
      deliveriesCount: row.deliveriesCount,
      attemptsCount: row.attemptsCount,
      at: this.#deps.clock.now(),
    });
    this.#deps.emit?.({ type: 'acked', ...deliveryScope(lease, this.#deps.subscriber), durationSeconds });
    written?.('written');
  }

  retry(lease: Lease, run: Run, delayMs: number, error: unknown): Promise<OutcomeWrite> {
    const row = this.#row(lease);
    const exceptionType = error === undefined ? undefined : exceptionTypeOf(error);
    const nextAttemptAt = this.#deps.clock.nowMs() + delayMs;
    this.#deps.table.retry(row, {
      nextAttemptAt,
      firstAttemptAt: lease.record.first_attempt_at?.getTime() ?? run.startedAt.getTime(),
      lastAttemptAt: run.startedAt.getTime(),
      exceptionType: exceptionType ?? null,
      exception: error === undefined ? null : boundedLastException(this.#deps.renderError, error),
    });
    this.#deps.records.retried.push({
      messageId: lease.record.id,
      queue: row.queue,
      subscriber: this.#deps.subscriber,
      attempt: row.attemptsCount,
      delayMs,
      error,
      exceptionType,
      nextAttemptAt: new Date(nextAttemptAt),
    });
    this.#deps.emit?.({
      type: 'nacked_retried',
      ...deliveryScope(lease, this.#deps.subscriber),
      durationSeconds: run.durationSeconds,
      nextDelaySeconds: delayMs / 1000,
      ...(exceptionType === undefined ? {} : { exceptionType }),
    });
    return Promise.resolve('written');
  }

  terminal(lease: Lease, reason: TerminalReason, error: unknown, run: Run | undefined): Promise<OutcomeWrite> {
    const row = this.#row(lease);
    const exceptionType = error === undefined ? (row.lastExceptionType ?? undefined) : exceptionTypeOf(error);
    const scope = deliveryScope(lease, this.#deps.subscriber);
    const terminalEvent: OutboxEvent = {
      type: 'nacked_terminal',
      ...scope,
      reason,
      ...(run === undefined ? {} : { durationSeconds: run.durationSeconds }),
      ...(exceptionType === undefined ? {} : { exceptionType }),
    };
    this.#deps.table.delete(row.seq);
    if (!this.#deps.dlq) {
      this.#deps.logger.warn(
        { subscriber: this.#deps.subscriber, queue: row.queue, messageId: scope.messageId, reason },
        'terminal row deleted without a DLQ',
      );
      this.#deps.emit?.(terminalEvent);
      return Promise.resolve('written');
    }
    // The dlqMove statement's COALESCEs: this run's error, else the one the row kept.
    const lastException =
      error !== undefined
        ? boundedLastException(this.#deps.renderError, error)
        : reason === 'max_deliveries' && row.lastExceptionType === null
          ? NO_FAILURE_RECORDED
          : null;
    const startedAt = run?.startedAt.getTime() ?? null;
    const moved: MemoryRow = {
      ...row,
      firstAttemptAt: row.firstAttemptAt ?? startedAt,
      lastAttemptAt: startedAt ?? row.lastAttemptAt,
      attemptsCount: row.attemptsCount + (run === undefined ? 0 : 1),
      lastException: lastException ?? row.lastException,
      lastExceptionType: error === undefined ? row.lastExceptionType : (exceptionType ?? null),
    };
    this.#deps.records.deadLetters.push(
      toDeadLetter(moved, { id: this.#deps.nextDeadLetterId(), reason, failedAt: this.#deps.clock.nowMs() }),
    );
    this.#deps.emit?.(terminalEvent);
    this.#deps.emit?.({
      type: 'dlq_written',
      ...scope,
      failureReason: reason,
      ...(exceptionType === undefined ? {} : { exceptionType }),
    });
    return Promise.resolve('written');
  }
}
