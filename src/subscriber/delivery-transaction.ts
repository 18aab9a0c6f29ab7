import type pg from 'pg';

import { LeaseLostError, NotInTransactionError } from '../errors.js';
import type { ConsumeResult, OutcomeWrite } from '../instrumentation/middleware.js';
import { protocolEvents, transactionStatus } from '../producer/executor.js';
import { asFields, prelude } from '../util/decoded-query.js';
import { idleBound, idleBoundMs as boundOfIdle, KEEPALIVE_GIVES_UP_MS, KEEPALIVE_PROBES } from '../util/idle-bound.js';
import { type Statement, statement } from '../util/statement.js';
import type { StatementRunner } from '../util/statement-runner.js';
import { serverFault, transient } from '../util/transient-failure.js';
import { sessionEnded, unanswered } from '../util/unanswered.js';
import type { AckResult } from './acker.js';
import type { DeliveryControls } from './decision.js';
import type { DeliverySignal } from './delivery-signal.js';
import type { Lease } from './lease.js';
import type { ClaimedRecord } from './message.js';
import { ACK_XID_FIELD, type MatchedPair, pairValues, type SubscriberSql } from './sql.js';
import type { IsolationLevel } from './subscription-options.js';
import { transactionOutcome } from './transaction-outcome.js';
import type { UnsettledWrites } from './unsettled-writes.js';

const ignore = (): void => undefined;

/** How deep a handler's error is searched for the server's answer it wraps (`cause`). */
const MAX_CAUSES = 4;

/**
 * Taken right after the row's lock, so a failed run rolls back to it and keeps the lock (a lock
 * taken inside a savepoint would go with it) while its retry or DLQ write runs in the same
 * transaction. Nothing is written inside it by txoutbox; the handler's writes are. Released before
 * the ack: deleted from inside it, the row locked by the transaction above it needs a MultiXact
 * (the lock must come back should the savepoint roll back), and the drain fell from 0.9k to 0.17k
 * msgs/s at concurrency 1, every later lock and DELETE slowed to ~2 ms by the MultiXacts of the
 * dead rows (BENCHMARKS.md, issue 18 round fifteen).
 */
const HANDLER_SAVEPOINT = statement('tc_savepoint', 'SAVEPOINT txoutbox_handler');
const RELEASE_HANDLER_SAVEPOINT = statement('tc_release', 'RELEASE SAVEPOINT txoutbox_handler');
/**
 * A failed run: back to the savepoint (the handler's writes undone, the lock kept), then out of it
 * (one simple query, one round trip): the outcome write runs in the transaction itself, since an
 * UPDATE or DELETE from inside the savepoint would need a MultiXact as the ack's would.
 */
const BACK_TO_HANDLER_SAVEPOINT = 'ROLLBACK TO SAVEPOINT txoutbox_handler; RELEASE SAVEPOINT txoutbox_handler';
/** PostgreSQL's invalid_savepoint_specification: the handler ended the transaction and began another. */
const INVALID_SAVEPOINT = '3B001';

const ENDED_BY_HANDLER =
  "the handler ended ctx.client's transaction itself (COMMIT or ROLLBACK, or a data layer's transaction() on ctx.client): what it wrote before that is already committed, without the ack, and a retry writes it again. Fix: never end ctx.client's transaction (txoutbox commits it with the ack after the handler returns); use SAVEPOINT for nested work";

/** The BEGIN of each level: constant texts, never built from a value. */
const BEGIN: Record<IsolationLevel | 'default', string> = {
  default: 'BEGIN',
  'read committed': 'BEGIN ISOLATION LEVEL READ COMMITTED',
  'repeatable read': 'BEGIN ISOLATION LEVEL REPEATABLE READ',
  serializable: 'BEGIN ISOLATION LEVEL SERIALIZABLE',
};

/**
 * A failed run's transaction, kept open for its outcome write: the handler's writes undone, the
 * row still locked, so no claim can take it before its retry or DLQ write lands.
 */
export interface HeldForOutcome {
  /** Runs the outcome write (one statement: OutcomeWriter's retry or terminal) in it, then COMMIT; once. */
  run(statement: Statement, values: unknown[]): Promise<pg.QueryResult>;
  /** Ends it unwritten, when the write did not run (the server rolls back). Idempotent, never throws. */
  end(reason: unknown): void;
}

/** One delivery's transaction as deliver() uses it (DeliveryTransaction; txoutbox/testing may bring its own). */
export interface HandlerTransaction {
  readonly client: pg.PoolClient;
  /**
   * The fenced ack and COMMIT, or ROLLBACK when the ack matched nothing; throws when it cannot commit
   * (then ended). A COMMIT whose answer was lost is asked of the server until `giveUp()`.
   */
  commitAck(lease: Lease, giveUp?: () => boolean): Promise<'deleted' | 'lease_lost'>;
  /**
   * After a run that did not ack: back to the savepoint taken right after the row's lock, and the
   * transaction held for the outcome write. Undefined (ended) when that cannot be done (the handler
   * ended the transaction itself): the write then goes through the pool. Without it, rollback().
   */
  holdForOutcome?(): Promise<HeldForOutcome | undefined>;
  /** When holdForOutcome gave nothing: the handler's work undone, the row's lease refreshed, committed (or closed). */
  endWithFreshLease?(lease: Lease): Promise<void>;
  /**
   * Whether a handler that threw `thrown` failed for the database's reasons: ctx.client's
   * connection was lost, or the server answered one of its statements with `thrown` (or its cause)
   * for a reason of its own (util/transient-failure.ts serverFault). Nothing of the transaction
   * could commit then either.
   */
  failedByDatabase?(thrown: unknown): boolean;
  /** Never throws. */
  rollback(): Promise<void>;
  /** Ends it now (the server rolls back). Idempotent, never throws. */
  destroy(reason: unknown): void;
}

/** Where a transactional subscription's deliveries get their transactions, and where their acks are reported. */
export interface DeliveryTransactions {
  /** BEGIN and the row's lock: the transaction, or 'lease_lost' (nothing held) when the row is no longer this lease's. */
  begin(lease: Lease): Promise<HandlerTransaction | 'lease_lost'>;
  /** An ack run in a transaction landed or was fenced off: what the acker's settle does (events, key wake-up, counts). */
  settled(lease: Lease, durationSeconds: number, result: AckResult, written: ((result: OutcomeWrite) => void) | undefined): void;
}

/**
 * The transaction of one delivery of a `transactional: true` subscription
 * (architecture/transactional-consume.md): a connection checked out of the Outbox's pool for this
 * delivery, `BEGIN` on it, handed to the handler as `ctx.client`.
 *
 * Its first statement locks the claimed row, fenced by the lease's token (sql.ts lockLease). From
 * then on the lock is the lease: a claim's SKIP LOCKED passes the row by however old its lease
 * gets, and a stale holder's fenced write waits for this transaction and then matches nothing. So
 * the subscription leaves the row out of lease renewal while the transaction is open (`onEnd`
 * says when it ended): a renewal would change the row after the handler's snapshot, and under
 * repeatable read or serializable the ack's DELETE would then fail with a serialization error.
 * No row: the lease was lost while the row waited in the buffer; the handler does not run.
 *
 * States:
 *   open       BEGIN and the lock done; the handler runs its statements on `client`.
 *   committed  the fenced ack DELETE matched the row and COMMIT returned: the handler's writes,
 *              its follow-up publishes and the ack landed together.
 *   ended      rolled back (a nack, a reject, a throw, or an ack that matched nothing: the lease
 *              was lost and the newer holder's run is the only one whose effects may commit), or
 *              its connection destroyed (a failed statement, an aborted delivery): the server
 *              rolls back a transaction whose connection closed.
 * The connection goes back to the pool exactly once, destroyed whenever it may be unusable.
 * Every statement txoutbox sends here is bounded like its others (StatementRunner.bounded): a
 * stuck COMMIT fails instead of holding the slot, and an aborted delivery (drain timeout, lease
 * lost) destroys the connection at once, so a handler wedged inside its transaction cannot keep
 * locks, a snapshot or stop() waiting.
 */
export class DeliveryTransaction implements HandlerTransaction {
  readonly client: pg.PoolClient;
  readonly #db: StatementRunner;
  readonly #ack: Statement;
  /** The row it locked, as claimed, and sql.ts `unwritten`: what a lost COMMIT's answer is checked against (transaction-outcome.ts). */
  readonly #record: ClaimedRecord;
  readonly #unwritten: Statement;
  readonly #refreshHeldLease: Statement;
  readonly #onEnd: () => void;
  #released = false;
  /**
   * Its connection is gone: the client emitted 'error' (node-postgres does once the socket ended
   * unasked), or an answer on it ended the session (a FATAL: the socket closes next, and a handler
   * that rethrew at once, or wrapped the error where no `cause` leads to it, threw before the close
   * was heard).
   */
  #lost = false;
  readonly #heardLoss = (): void => {
    this.#lost = true;
  };
  /**
   * The errors the server sent on this connection (ErrorResponse, as node-postgres parsed it: the
   * very object a failed query rejects with), so that a handler's throw is told to be one of them.
   */
  readonly #answered = new WeakSet<object>();
  readonly #heardAnswer = (message: object): void => {
    this.#answered.add(message);
    if (sessionEnded(message)) this.#lost = true;
  };
  /** Why the connection was destroyed, when it was (an abort: the lease ran out, stop() gave up). */
  #closedBy: Error | undefined;

  /**
   * Whether a failed run's outcome write may join the transaction: not under repeatable read or
   * serializable, where it would run in the handler's snapshot (and a serializable COMMIT could
   * fail on the rolled-back handler's reads): rolled back and written through the pool instead.
   */
  readonly #holdable: boolean;
  /**
   * By when the server ends this transaction once its client is gone: its idle bound, or (under
   * renewal, no idle bound) what its keepalive probes take. How long a COMMIT whose answer was lost
   * is asked about (commitAck).
   */
  readonly #endedWithinMs: number;
  /** The subscription's claims, seen while a lost COMMIT's answer is asked for (unsettled-writes.ts). */
  readonly #unsettled: UnsettledWrites;

  private constructor(
    db: StatementRunner,
    { ackBatch, unwritten, refreshHeldLease }: Pick<SubscriberSql, 'ackBatch' | 'unwritten' | 'refreshHeldLease'>,
    record: ClaimedRecord,
    client: pg.PoolClient,
    onEnd: () => void,
    holdable: boolean,
    endedWithinMs: number,
    unsettled: UnsettledWrites,
  ) {
    this.#db = db;
    this.#unsettled = unsettled;
    this.#holdable = holdable;
    this.#endedWithinMs = endedWithinMs;
    this.#ack = ackBatch;
    this.#unwritten = unwritten;
    this.#refreshHeldLease = refreshHeldLease;
    this.#record = record;
    this.client = client;
    this.#onEnd = onEnd;
    client.on('error', this.#heardLoss);
    protocolEvents(client)?.on('errorMessage', this.#heardAnswer);
  }

  /**
   * A connection within queryTimeoutMs, BEGIN on it and the row's lock; throws (nothing held) when
   * one of them fails, and returns 'lease_lost' (nothing held) when the lock finds the row re-leased.
   * `idleBoundMs` (the leaseTtlMs of a run without renewal, which the lease bounds anyway): the
   * server ends the transaction when idle that long plus IDLE_MARGIN_MS (util/idle-bound.ts), so a
   * connection cut off half-open does not keep the row locked for hours. Without it (renewal: a run
   * may be idle as long as it likes) the server probes the client by TCP keepalive instead.
   * `onEnd` runs once, when nothing is held any more (also when begin fails). The ack is the
   * acker's fenced DELETE (sql.ts ackBatch), run here for one row.
   */
  static async begin(
    db: StatementRunner,
    sql: Pick<SubscriberSql, 'ackBatch' | 'lockLease' | 'unwritten' | 'refreshHeldLease'>,
    lease: Lease,
    isolationLevel: IsolationLevel | undefined,
    onEnd: () => void,
    unsettled: UnsettledWrites,
    idleBoundMs?: number,
  ): Promise<DeliveryTransaction | 'lease_lost'> {
    let client: pg.PoolClient;
    try {
      client = await db.checkout();
    } catch (error) {
      onEnd();
      throw error;
    }
    // A connection that dies mid-statement also emits 'error' on its client: unheard, it would
    // crash the process. The statement fails too, and that failure is what is reported.
    client.on('error', ignore);
    const holdable = isolationLevel === undefined || isolationLevel === 'read committed';
    const endedWithinMs = idleBoundMs === undefined ? KEEPALIVE_GIVES_UP_MS : boundOfIdle(idleBoundMs);
    const transaction = new DeliveryTransaction(db, sql, lease.record, client, onEnd, holdable, endedWithinMs, unsettled);
    try {
      const begin = BEGIN[isolationLevel ?? 'default'];
      const guard = idleBoundMs === undefined ? KEEPALIVE_PROBES : idleBound(idleBoundMs);
      await client.query(db.bounded({ text: `${begin}; ${guard}` }));
      if (await lockThenSavepoint(db, client, sql.lockLease, lease)) return transaction;
    } catch (error) {
      transaction.destroy(error);
      throw error;
    }
    await transaction.rollback();
    return 'lease_lost';
  }

  /**
   * The ack, in the handler's transaction: the acker's fenced DELETE (by (id, token)) for this one
   * row, then COMMIT; ROLLBACK when it matched nothing ('lease_lost'). Throws when the transaction
   * cannot commit (the handler left it failed or ended it itself, a deferred constraint, a
   * serialization failure, a dead connection): it is then ended and nothing of it committed.
   * A COMMIT sent and never answered (a client-side timeout, a connection lost after it left: it
   * may have landed) is asked of the server by the transaction's id (transaction-outcome.ts):
   * 'deleted' when it committed, as an answered COMMIT; thrown as before otherwise. Until `giveUp()`
   * (stop() stopped waiting).
   */
  async commitAck(lease: Lease, giveUp: () => boolean = () => false): Promise<'deleted' | 'lease_lost'> {
    if (this.#closedBy !== undefined) {
      throw new Error(
        `the delivery's transaction was closed before its ack (${this.#closedBy.message}); nothing of it committed`,
      );
    }
    const status = transactionStatus(this.client);
    if (status === 'E' || status === 'I') {
      await this.rollback();
      throw new NotInTransactionError(
        status === 'E'
          ? "ctx.client's transaction failed inside the handler (a statement error it caught), so nothing of it can commit; rolled back. Fix: wrap a statement that may fail in SAVEPOINT … ROLLBACK TO SAVEPOINT, or let the error propagate"
          : ENDED_BY_HANDLER,
      );
    }
    let xid: string | undefined;
    try {
      const acked = await releaseThenAck(this.#db, this.client, this.#ack, lease);
      if (acked.deleted === 0) {
        await this.rollback();
        return 'lease_lost';
      }
      xid = acked.xid;
      await this.client.query(this.#db.bounded({ text: 'COMMIT' }));
    } catch (error) {
      // The savepoint is gone from a transaction that is open: the handler committed or rolled
      // back ctx.client's transaction and began another (COMMIT; BEGIN).
      if ((error as { code?: unknown }).code === INVALID_SAVEPOINT) {
        this.destroy(error);
        throw new NotInTransactionError(ENDED_BY_HANDLER, { cause: error });
      }
      if (xid !== undefined && (await this.#landedAfter(error, xid, giveUp))) return 'deleted';
      throw error;
    }
    this.#release(undefined);
    return 'deleted';
  }

  /**
   * After a failed COMMIT of transaction `xid`: whether it landed anyway (its answer was lost, and
   * the server says it committed and its row agrees: transaction-outcome.ts), asked before the
   * connection is let go, so that the row stays out of renewal (onEnd) while the server may still
   * hold its lock. The connection is destroyed either way.
   */
  async #landedAfter(error: unknown, xid: string, giveUp: () => boolean): Promise<boolean> {
    const written = { unwritten: this.#unwritten, records: [this.#record] };
    let landed = false;
    if (unanswered(error)) {
      const watch = this.#unsettled.watch(written.records);
      try {
        landed = (await transactionOutcome(this.#db, xid, written, this.#endedWithinMs, { giveUp, watch })) === 'committed';
      } finally {
        watch.end();
      }
    }
    this.destroy(error);
    return landed;
  }

  async holdForOutcome(): Promise<HeldForOutcome | undefined> {
    if (this.#released || !this.#holdable) return undefined;
    let xid: string | undefined;
    try {
      // Fails when the handler ended the transaction itself (the savepoint went with it). The
      // transaction's id (its row lock assigned one) is for a COMMIT whose answer is lost.
      const answered: unknown = await this.client.query(
        this.#db.bounded({ text: `${BACK_TO_HANDLER_SAVEPOINT}; SELECT pg_current_xact_id() AS xid` }),
      );
      const results = (Array.isArray(answered) ? answered : [answered]) as pg.QueryResult<{ xid?: string }>[];
      xid = results[results.length - 1]?.rows[0]?.xid;
    } catch (error) {
      this.destroy(error);
      return undefined;
    }
    let used = false;
    return {
      run: async (statement, values) => {
        if (used || this.#released) throw new Error("a failed run's held transaction takes one outcome write");
        used = true;
        let result: pg.QueryResult | undefined;
        try {
          result = await this.#db.runOn(this.client, statement, values);
          await this.client.query(this.#db.bounded({ text: 'COMMIT' }));
          this.#release(undefined);
          return result;
        } catch (error) {
          // The write answered, its COMMIT did not: it may have landed. Asked until an abort (the
          // lease's end, stop() giving up) closes the transaction.
          if (result !== undefined && xid !== undefined && (await this.#landedAfter(error, xid, () => this.#released)))
            return result;
          this.destroy(error);
          throw error;
        }
      },
      end: (reason) => {
        this.destroy(reason);
      },
    };
  }

  failedByDatabase(thrown: unknown): boolean {
    if (this.#released) return false;
    if (this.#lost) return true;
    // The server's answer on this connection, thrown as it is or as the cause of the handler's (or
    // its data layer's) own error.
    let error = thrown;
    for (let depth = 0; depth < MAX_CAUSES && typeof error === 'object' && error !== null; depth += 1) {
      if (this.#answered.has(error)) return serverFault(error);
      error = (error as { cause?: unknown }).cause;
    }
    return false;
  }

  /**
   * Ends the transaction of a failed run whose outcome is written through the pool (repeatable
   * read, serializable: not holdable): the handler's work rolled back to its savepoint, the row's
   * lease refreshed to the clock's now, committed. That write then comes well inside a fresh lease.
   * A plain ROLLBACK let a claim take the row in between, its lease as old as the run when that
   * outlived it under renewal (the write then found it gone: lease_lost, the attempt unrecorded).
   * Closed as before when it cannot be done (the savepoint gone, a serializable COMMIT refused).
   * Never throws.
   */
  async endWithFreshLease(lease: Lease): Promise<void> {
    if (this.#released) return;
    try {
      await this.client.query(this.#db.bounded({ text: BACK_TO_HANDLER_SAVEPOINT }));
      await this.#db.runOn(this.client, this.#refreshHeldLease, [lease.record.id, lease.token]);
      await this.client.query(this.#db.bounded({ text: 'COMMIT' }));
      this.#release(undefined);
    } catch (error) {
      this.destroy(error);
    }
  }

  /** ROLLBACK and back to the pool; the connection is destroyed when that fails. Never throws. */
  async rollback(): Promise<void> {
    if (this.#released) return;
    try {
      await this.client.query(this.#db.bounded({ text: 'ROLLBACK' }));
      this.#release(undefined);
    } catch (error) {
      this.destroy(error);
    }
  }

  /** Closes the connection (the server rolls the transaction back). Idempotent, never throws. */
  destroy(reason: unknown): void {
    this.#release(reason instanceof Error ? reason : new Error(String(reason)));
  }

  #release(error: Error | undefined): void {
    if (this.#released) return;
    this.#released = true;
    this.#closedBy = error;
    this.#onEnd();
    this.client.removeListener('error', this.#heardLoss);
    protocolEvents(this.client)?.removeListener('errorMessage', this.#heardAnswer);
    // A destroyed connection may still emit 'error' while it closes: keep it heard.
    if (error === undefined) this.client.removeListener('error', ignore);
    try {
      this.client.release(error ?? false);
    } catch {
      // A pool that already ended: the connection is closed with it.
    }
  }
}

/**
 * The row's lock (fenced by the lease's token), then HANDLER_SAVEPOINT, in one round trip when the
 * client can pipeline (StatementRunner.pipelineOn): false when the lock found the row re-leased.
 */
async function lockThenSavepoint(db: StatementRunner, client: pg.PoolClient, lock: Statement, lease: Lease): Promise<boolean> {
  const values = [lease.record.id, lease.token];
  const answer = await db.pipelineOn(client, [prelude(lock, values)], HANDLER_SAVEPOINT, [], asFields);
  if (answer !== undefined) return rowsOfTag(answer.tags[0]) !== 0;
  const locked = await db.runOn(client, lock, values);
  if (locked.rowCount === 0) return false;
  await db.runOn(client, HANDLER_SAVEPOINT, []);
  return true;
}

/**
 * RELEASE of HANDLER_SAVEPOINT, then the fenced ack DELETE in the transaction itself, in one round
 * trip when the client can pipeline: the rows it deleted (0: the lease was lost), and the
 * transaction's id (sql.ts ackBatch returns it with the pair) for a COMMIT whose answer is lost.
 */
async function releaseThenAck(
  db: StatementRunner,
  client: pg.PoolClient,
  ack: Statement,
  lease: Lease,
): Promise<{ readonly deleted: number; readonly xid: string | undefined }> {
  const values = pairValues([lease]);
  const answer = await db.pipelineOn(client, [prelude(RELEASE_HANDLER_SAVEPOINT)], ack, values, asFields);
  if (answer !== undefined) return { deleted: answer.rows.length, xid: answer.rows[0]?.[ACK_XID_FIELD] ?? undefined };
  await db.runOn(client, RELEASE_HANDLER_SAVEPOINT, []);
  const { rows } = await db.runOn<MatchedPair & { xid: string }>(client, ack, values);
  return { deleted: rows.length, xid: rows[0]?.xid };
}

/** The row count of a command tag (`SELECT 1`); 0 when there is none. */
function rowsOfTag(tag: string | undefined): number {
  const rows = Number(tag?.slice(tag.lastIndexOf(' ') + 1));
  return Number.isInteger(rows) ? rows : 0;
}

/** What a transactional run did with its ack: set once its COMMIT (or its fenced-off ROLLBACK) returned. */
export interface Committed {
  result: 'deleted' | 'lease_lost' | undefined;
  /** A run that did not ack, its transaction held for the outcome write (HandlerTransaction.holdForOutcome). */
  held?: HeldForOutcome;
}

/**
 * A transactional delivery's step of the consume chain: BEGIN, the handler (`run`) with the
 * transaction as ctx.client, then the ack and COMMIT in it, or ROLLBACK for any other decision
 * (its retry or terminal write follows outside, as for any delivery). A checkout, BEGIN or row lock
 * that fails, and an ack or COMMIT that fails for the database's reasons (util/transient-failure.ts),
 * fail the run with `transientFault` (`fail`: a retry, whatever the ack policy); an ack or COMMIT
 * that fails for what the handler did (a deferred constraint, a transaction it left failed or
 * ended) fails it like a throwing handler (retry or reject by the ack policy). An abort of
 * the delivery (drain timeout, lease lost) destroys the connection at once: the handler's
 * statements fail, nothing of it commits, no lock or snapshot outlives it.
 */
export async function runInTransaction(
  transactions: DeliveryTransactions | undefined,
  lease: Lease,
  controls: DeliveryControls,
  signal: DeliverySignal,
  abandoned: () => boolean,
  committed: Committed,
  run: () => Promise<ConsumeResult>,
  fail: (error: unknown, result: ConsumeResult | undefined, transientFault?: boolean) => ConsumeResult,
): Promise<ConsumeResult> {
  let transaction: HandlerTransaction | 'lease_lost';
  try {
    if (transactions === undefined) throw new Error('a transactional subscription without a transaction source');
    transaction = await transactions.begin(lease);
  } catch (error) {
    // Nothing of the message has run: the checkout, BEGIN or the row's lock failed.
    return fail(error, undefined, true);
  }
  if (transaction === 'lease_lost') {
    // Reported like an ack fenced off (deliver: `committed`): lease_lost, no outcome write.
    committed.result = 'lease_lost';
    return fail(new LeaseLostError(lease.record.id), undefined);
  }
  controls.bindTransaction(transaction.client);
  const aborted = signal.signal;
  const onAbort = (): void => {
    transaction.destroy(aborted.reason);
  };
  aborted.addEventListener('abort', onAbort, { once: true });
  if (aborted.aborted) onAbort();
  try {
    let result = await run();
    // The lease ran out with the row locked (subscription.ts #lockExpiry): the transaction was
    // closed, the row is free for the next claim, and nothing is written, whatever the handler
    // decided: reported as lease_lost, as a plain run whose lease expired would be.
    if (aborted.aborted && aborted.reason instanceof LeaseLostError) {
      committed.result = 'lease_lost';
      return result;
    }
    // A handler that threw (neither nacking nor rejecting itself) because ctx.client's connection or
    // a statement on it failed for the database's reasons: retried as a failure of txoutbox's own
    // statements is. A throw of its own on a connection lost meanwhile is taken for one too: it
    // costs one more run, which throws it again, on a connection that works.
    if (
      result.status === 'error' &&
      !aborted.aborted &&
      !controls.nackedOrRejected &&
      transaction.failedByDatabase?.(result.error) === true
    )
      result = fail(result.error, result, true);
    if (result.outcome.kind !== 'ack') {
      // The row stays locked through its retry or DLQ write: rolled back and written through the
      // pool, a claim could take it in between (its lease is as old as the run), and the write
      // then found it gone (lease_lost: the failure unrecorded, no backoff).
      const held = abandoned() ? undefined : await transaction.holdForOutcome?.();
      if (held === undefined) {
        if (!abandoned() && transaction.endWithFreshLease !== undefined) await transaction.endWithFreshLease(lease);
        else await transaction.rollback();
        return result;
      }
      // Still closed by an abort (the lease's end, stop() giving up) while held: through the
      // consume middlewares' code after next() and the write, as during the handler.
      const unlisten = (): void => {
        aborted.removeEventListener('abort', onAbort);
      };
      committed.held = {
        run: (statement, values) => held.run(statement, values).finally(unlisten),
        end: (reason) => {
          unlisten();
          held.end(reason);
        },
      };
      return result;
    }
    // stop() stopped waiting: the pool may be gone; nothing is written (the row is redelivered).
    if (abandoned()) {
      transaction.destroy(new Error('shutdown: graceful timeout reached'));
      return result;
    }
    try {
      committed.result = await transaction.commitAck(lease, () => abandoned() || aborted.aborted);
      return result;
    } catch (error) {
      // The lease ran out during the ack (the timer closed the connection): the outcome is unknown
      // to us. Rolled back (closed mid-DELETE), the row keeps this run's expired token and is the
      // next claim's; committed (the COMMIT was already running), the row is gone. Either way not
      // the delivery's failure: under reject_on_error that sent a handler that succeeded to the
      // DLQ. A misuse the ack found (the handler ended ctx.client's transaction) stays an error.
      if (aborted.aborted && aborted.reason instanceof LeaseLostError && !(error instanceof NotInTransactionError)) {
        committed.result = 'lease_lost';
        return result;
      }
      // Closed by an abort (a handler timeout): the abort's reason is the failure, not the database.
      return fail(error, result, !aborted.aborted && !(error instanceof NotInTransactionError) && transient(error));
    }
  } finally {
    // A held transaction is ended by its outcome write or its end() (deliver.ts), which stop
    // listening for the abort then.
    if (committed.held === undefined) {
      aborted.removeEventListener('abort', onAbort);
      transaction.destroy(new Error('transactional delivery ended without COMMIT or ROLLBACK'));
    }
  }
}
