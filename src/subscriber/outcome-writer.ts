import { errorMessage } from '../errors.js';
import { exceptionTypeOf, type OutboxEvent, type TerminalReason } from '../instrumentation/events.js';
import type { OutcomeWrite } from '../instrumentation/middleware.js';
import { type Emit, emitterOf } from '../instrumentation/recorders.js';
import type { ThroughputTally } from '../queues/throughput-tally.js';
import type { TableName } from '../schema/identifiers.js';
import { DLQ_ADDED_COLUMNS, unmigratedSchemaError } from '../schema/unmigrated-schema.js';
import type { Logger } from '../util/logger.js';
import type { Statement } from '../util/statement.js';
import type { StatementRunner } from '../util/statement-runner.js';
import { unanswered } from '../util/unanswered.js';
import { type AckEntry, Acker, type AckResult } from './acker.js';
import { ackedEvent, deliveryScope, type Lease } from './lease.js';
import { boundedLastException, type RenderError } from './render-error.js';
import type { SubscriberSql } from './sql.js';
import { writtenAsClaimed } from './transaction-outcome.js';

/** The DLQ's last_exception for a row that reached max_deliveries without any handler run failing. */
export const NO_FAILURE_RECORDED =
  'max_deliveries: no handler run recorded a failure; every delivery ended by lease expiry (a handler that hung or outlived leaseTtlMs, or a process that died mid-run)';

const WRITE_OF_ACK: Record<AckResult, OutcomeWrite> = { deleted: 'written', lease_lost: 'lease_lost', failed: 'failed' };

/** A finished handler run, for timings and attempt bookkeeping. */
export interface Run {
  readonly startedAt: Date;
  readonly durationSeconds: number;
}

/** Where an outcome write's statement runs. */
export type OutcomeDb = Pick<StatementRunner, 'run'>;

export interface OutcomeWriterDeps {
  /** Where its statements run: the pool, or a row-lock batch's transaction (row-lock-batch.ts). */
  readonly db: OutcomeDb;
  readonly sql: SubscriberSql;
  readonly dlq: boolean;
  /** The DLQ table, to name the migration a DLQ move's failure asks for (a DLQ behind the code). */
  readonly dlqTable: TableName | undefined;
  readonly subscriber: string;
  readonly logger: Logger;
  readonly emit: Emit;
  readonly renderError: RenderError;
  /** Counts each written outcome for <table>_stats (status, the dashboard). */
  readonly tally: Pick<ThroughputTally, 'count'>;
  /**
   * A keyed row ended (deleted or moved to the DLQ): the next row of its key may be claimed now.
   * Nothing else would say so — no NOTIFY is sent for it — so a claim loop idling between polls
   * would leave a key's next row waiting for up to maxPollIntervalMs. `queue`: the ended row's.
   */
  readonly keyFreed: (queue: string) => void;
  /**
   * A retry was written: the row is due at `dueAt` (performance.now() time, taken after the write
   * returned, so not before the database's due time). Nothing sends a NOTIFY for it (due-alarm.ts).
   */
  readonly retried?: (dueAt: number) => void;
  /**
   * The performance.now() before which a lease cannot have run out on the server, so no other
   * holder can have claimed its row (Acker: an ack retried after an unanswered try). Absent: never.
   */
  readonly leaseHeldUntil?: (lease: Lease) => number;
}

/**
 * Writes a delivery's outcome, fenced by (id, token), and reports what the database did. A write
 * that matches no row means the lease was lost (expired and re-claimed): `lease_lost`, never the
 * outcome. A write that fails leaves the row leased: it is redelivered after the lease expires.
 */
export class OutcomeWriter {
  readonly #deps: OutcomeWriterDeps;
  readonly #acker: Acker;
  /** `acked` is built per ack only when a recorder reads it (Recorder.readingOnly). */
  readonly #emitAcked: Emit;

  constructor(deps: OutcomeWriterDeps) {
    this.#deps = deps;
    this.#emitAcked = emitterOf(deps.emit, 'acked');
    this.#acker = new Acker(
      deps.db,
      deps.sql.ackMissed,
      deps.logger,
      (entry, result) => {
        this.#acked(entry, result);
      },
      deps.leaseHeldUntil,
    );
  }

  /** The leases whose ack is queued and not yet sent (Acker.queued). */
  queuedAcks(): readonly Lease[] {
    return this.#acker.queued().map((entry) => entry.lease);
  }

  /** Resolves once every ack handed over so far has been written (or failed). */
  drainAcks(): Promise<void> {
    return this.#acker.drain();
  }

  #scope(lease: Lease) {
    return deliveryScope(lease, this.#deps.subscriber);
  }

  #leaseLost(lease: Lease, phase: 'terminal' | 'retry'): void {
    this.#deps.logger.warn(
      { subscriber: this.#deps.subscriber, queue: lease.record.queue, messageId: lease.record.id, phase },
      'lease expired before the outcome was written; another delivery owns the row now',
    );
    this.#deps.emit?.({ type: 'lease_lost', ...this.#scope(lease), phase });
  }

  #writeFailed(lease: Lease, what: string, error: unknown): void {
    this.#deps.logger.error(
      { subscriber: this.#deps.subscriber, queue: lease.record.queue, messageId: lease.record.id, err: errorMessage(error) },
      `${what} failed; the row keeps its lease and will be redelivered after it expires`,
    );
  }

  /**
   * A DLQ move's failure, as SchemaNotMigratedError when the DLQ table lacks a column this version
   * writes (or is missing): logged for each row it keeps redelivering, it names the migration and
   * the `--since` script instead of PostgreSQL's undefined_column.
   */
  #dlqMoveError(error: unknown): unknown {
    const table = this.#deps.dlqTable;
    return (table === undefined ? undefined : unmigratedSchemaError(error, table, 'DLQ move', DLQ_ADDED_COLUMNS)) ?? error;
  }

  /**
   * Hands the delete to the acker (coalesced with the other slots'); reports what it did when it
   * lands, as an event and to `written` (the consume middleware's `ctx.written`) when given.
   * `entry`: an object the caller already has whose lease, durationSeconds and written are these
   * (deliver.ts' run), queued as it is instead of a new one per ack.
   */
  ack(lease: Lease, durationSeconds: number, written?: (result: OutcomeWrite) => void, entry?: AckEntry): void {
    this.#acker.ack(entry ?? { lease, durationSeconds, written });
  }

  /**
   * An ack that ran in the handler's own transaction (transactional subscriptions) landed or was
   * fenced off: reported exactly as the acker's, the ordering key's wake-up included.
   */
  ackedInTransaction(
    lease: Lease,
    durationSeconds: number,
    result: AckResult,
    written: ((result: OutcomeWrite) => void) | undefined,
  ): void {
    this.#acked({ lease, durationSeconds, written }, result);
  }

  #acked({ lease, durationSeconds, written }: AckEntry, result: AckResult): void {
    if (result === 'deleted') {
      if (lease.record.ordering_key !== null) this.#deps.keyFreed(lease.record.queue);
      this.#deps.tally.count(lease.record.queue, 'handled');
      this.#emitAcked?.(ackedEvent(lease, this.#deps.subscriber, durationSeconds));
    } else if (result === 'lease_lost') this.#leaseLost(lease, 'terminal');
    written?.(WRITE_OF_ACK[result]);
  }

  /**
   * A fenced outcome write (retry, DLQ move, terminal delete: each ends the lease it is fenced by).
   * When it ran on the pool and its answer was lost (util/unanswered.ts: a client-side timeout, a
   * connection lost after it left), it may have landed, and reporting it failed would drop its
   * events and tell the log the row keeps its lease. While the lease cannot have run out on the
   * server (leaseHeldUntil), nothing but this write can change the row, so the row tells (sql.ts
   * `unwritten`): gone, or its attempts_count raised, the write landed, and is reported as having
   * written the row; still as claimed, it has not landed yet (the failure stands: the row comes
   * back after its lease; a write stuck on its way, a frozen link or a pool without
   * statement_timeout, may still land later, as before). Not "no longer held": after a failover to
   * a standby the claim never reached, the row is not held there either, and nothing landed
   * (failover-commit-outcome.test.ts).
   * Not for a write inside a transaction (a row-lock batch's, a held transactional run's): its
   * fate is the transaction's.
   */
  async #runFenced(db: OutcomeDb, statement: Statement, lease: Lease, values: unknown[]): Promise<{ rowCount: number | null }> {
    for (;;) {
      // $2 of every fenced write is the lease's token, read as the statement leaves.
      const sent = lease.token;
      values[1] = sent;
      let result: { rowCount: number | null };
      try {
        result = await db.run(statement, values);
      } catch (error) {
        if (db === this.#deps.db && unanswered(error) && (await this.#landed(lease))) return { rowCount: 1 };
        throw error;
      }
      // Missed under the token it was sent with, but this subscription adopted a newer lease of the
      // row meanwhile (its own claim re-leased it: Subscription #adoptReclaimed): written again
      // under that one, as the acker does. Reported lost, the failure went unrecorded and the row
      // sat under a lease nobody held for a whole TTL.
      if (result.rowCount !== 0 || lease.token === sent) return result;
    }
  }

  /**
   * Whether the fenced write on `lease`'s row landed, by the row, read while the lease certainly
   * still held; false when that cannot be told.
   */
  async #landed(lease: Lease): Promise<boolean> {
    const heldUntil = this.#deps.leaseHeldUntil;
    if (heldUntil === undefined) return false;
    try {
      const asClaimed = await writtenAsClaimed(this.#deps.db, { unwritten: this.#deps.sql.unwritten, records: [lease.record] });
      // Answered now, so read no later: past the bound another holder may have taken the row.
      return performance.now() < heldUntil(lease) && !asClaimed;
    } catch {
      return false;
    }
  }

  /**
   * Reschedules the row, keeping the error it reported; resolves with what the database did. `db`:
   * where the statement runs instead of the writer's own (a failed transactional run's held
   * transaction, which commits it: delivery-transaction.ts HeldForOutcome).
   */
  async retry(lease: Lease, run: Run, delayMs: number, error: unknown, db: OutcomeDb = this.#deps.db): Promise<OutcomeWrite> {
    try {
      const firstAttemptAt = lease.record.first_attempt_at ?? run.startedAt;
      const result = await this.#runFenced(db, this.#deps.sql.retry, lease, [
        lease.record.id,
        lease.token,
        delayMs,
        firstAttemptAt,
        run.startedAt,
        error === undefined ? null : exceptionTypeOf(error),
        error === undefined ? null : boundedLastException(this.#deps.renderError, error),
      ]);
      if (result.rowCount === 0) {
        this.#leaseLost(lease, 'retry');
        return 'lease_lost';
      }
      this.#deps.retried?.(performance.now() + delayMs);
      this.#deps.tally.count(lease.record.queue, 'retried');
      this.#deps.emit?.({
        type: 'nacked_retried',
        ...this.#scope(lease),
        durationSeconds: run.durationSeconds,
        nextDelaySeconds: delayMs / 1000,
        ...(error === undefined ? {} : { exceptionType: exceptionTypeOf(error) }),
      });
      return 'written';
    } catch (writeError) {
      this.#writeFailed(lease, 'retry UPDATE', writeError);
      return 'failed';
    }
  }

  /**
   * Ends a row: into the DLQ (one statement: if the insert fails the delete rolls back) or, without
   * a DLQ, deleted with a warning. `run` and `error` are undefined when no handler ran
   * (max_deliveries): the row's last reported exception is kept and reported instead. `db` as for
   * retry(). Resolves with what the database did.
   */
  async terminal(
    lease: Lease,
    reason: TerminalReason,
    error: unknown,
    run: Run | undefined,
    db: OutcomeDb = this.#deps.db,
  ): Promise<OutcomeWrite> {
    const { record } = lease;
    const exceptionType = error === undefined ? (record.last_exception_type ?? undefined) : exceptionTypeOf(error);
    const terminalEvent: OutboxEvent = {
      type: 'nacked_terminal',
      ...this.#scope(lease),
      reason,
      ...(run === undefined ? {} : { durationSeconds: run.durationSeconds }),
      ...(exceptionType === undefined ? {} : { exceptionType }),
    };
    try {
      const dlqMove = this.#deps.sql.dlqMove;
      if (this.#deps.dlq && dlqMove !== undefined) {
        // NULL keeps the row's own (the last a handler reported); a row that never reported one
        // and ends by max_deliveries says why it has none.
        const lastException =
          error !== undefined
            ? boundedLastException(this.#deps.renderError, error)
            : reason === 'max_deliveries' && record.last_exception_type === null
              ? NO_FAILURE_RECORDED
              : null;
        const result = await this.#runFenced(db, dlqMove, lease, [
          record.id,
          lease.token,
          reason,
          lastException,
          run?.startedAt ?? null,
          run?.startedAt ?? null,
          run === undefined ? 0 : 1,
          // NULL keeps the row's own class, as above.
          error === undefined ? null : (exceptionType ?? null),
        ]);
        if (result.rowCount === 0) {
          this.#leaseLost(lease, 'terminal');
          return 'lease_lost';
        }
        if (record.ordering_key !== null) this.#deps.keyFreed(record.queue);
        this.#deps.tally.count(record.queue, 'deadLettered');
        this.#deps.emit?.(terminalEvent);
        this.#deps.emit?.({
          type: 'dlq_written',
          ...this.#scope(lease),
          failureReason: reason,
          ...(exceptionType === undefined ? {} : { exceptionType }),
        });
        return 'written';
      }
      const result = await this.#runFenced(db, this.#deps.sql.terminalDelete, lease, [lease.record.id, lease.token]);
      if (result.rowCount === 0) {
        this.#leaseLost(lease, 'terminal');
        return 'lease_lost';
      }
      this.#deps.logger.warn(
        { subscriber: this.#deps.subscriber, queue: lease.record.queue, messageId: lease.record.id, reason, exceptionType },
        'terminal row deleted without a DLQ',
      );
      if (record.ordering_key !== null) this.#deps.keyFreed(record.queue);
      this.#deps.tally.count(record.queue, 'deadLettered');
      this.#deps.emit?.(terminalEvent);
      return 'written';
    } catch (writeError) {
      if (this.#deps.dlq) this.#writeFailed(lease, 'DLQ move', this.#dlqMoveError(writeError));
      else this.#writeFailed(lease, 'terminal DELETE', writeError);
      return 'failed';
    }
  }
}
