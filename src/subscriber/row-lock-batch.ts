import type pg from 'pg';

import { errorMessage, HandlerTimeoutError } from '../errors.js';
import type { OutboxEvent } from '../instrumentation/events.js';
import type { OutcomeWrite } from '../instrumentation/middleware.js';
import { deferredEmit, type Emit } from '../instrumentation/recorders.js';
import type { ThroughputTally } from '../queues/throughput-tally.js';
import type { TableName } from '../schema/identifiers.js';
import { asFields, type Prelude, prelude, type RowFields, tagsBeforeFailure } from '../util/decoded-query.js';
import { idleBoundMs } from '../util/idle-bound.js';
import type { Logger } from '../util/logger.js';
import { type Statement, statement } from '../util/statement.js';
import type { StatementRunner } from '../util/statement-runner.js';
import { unanswered } from '../util/unanswered.js';
import type { AckEntry } from './acker.js';
import { decodeClaimedRow } from './claimed-row.js';
import { deliver, type DeliverDeps, type DeliveryEnds, failStuck } from './deliver.js';
import { DeliverySignal } from './delivery-signal.js';
import { emitFetched } from './fetched-events.js';
import type { HandlerSlots, SlotWaiter } from './handler-slots.js';
import type { Lease } from './lease.js';
import type { ClaimedRecord, Handler } from './message.js';
import { OutcomeWriter } from './outcome-writer.js';
import type { ClaimPlan, QueueSchedule } from './queue-schedule.js';
import type { RenderError } from './render-error.js';
import { idArray, ROW_LOCK_TOKEN, type RowLockSql, XID_FIELD } from './row-lock-sql.js';
import type { SubscriberSql } from './sql.js';
import { type Hurry, type TransactionOutcome, transactionOutcome, type WrittenRows } from './transaction-outcome.js';
import type { UnsettledWrites } from './unsettled-writes.js';

const ignore = (): void => undefined;
const queueOfRow = (row: ClaimedRecord): string => row.queue;

/** A COMMIT the server answered without committing (`ROLLBACK`): the batch rolled back, nothing to ask the server. */
class CommitRefused extends Error {}

/**
 * Whether node-postgres will refuse every query of `client` without sending it (its `_queryable`
 * and `_ending`, read as its `query()` does; undefined on another driver: judged queryable).
 */
function notQueryable(client: pg.ClientBase): boolean {
  const state = client as unknown as { _queryable?: boolean; _ending?: boolean };
  return state._queryable === false || state._ending === true;
}

const ROLLED_BACK = 'row-lock batch rolled back; its rows are unlocked as they were and will be delivered again';
const ID_REUSED =
  'Its COMMIT went unanswered, and the server says its transaction id committed but has its rows as claimed: after a failover, that id names another transaction';
const RECLAIMED =
  'Its COMMIT went unanswered, and a later claim of this subscription found its rows as the batch had claimed them: it did not commit (after a failover, the new primary has them as they were)';

/** Transaction control as named statements: parsed once per connection, like the rest of a pipelined message. */
const BEGIN = statement('rl_begin', 'BEGIN');
const COMMIT = statement('rl_commit', 'COMMIT');
type Outcome = Parameters<ThroughputTally['count']>[1];

/** What every batch of one row-lock subscription shares. */
export interface RowLockBatchDeps {
  readonly db: StatementRunner;
  readonly sql: RowLockSql;
  /** The subscription's BEGIN with its settings (rowLockBegin: its idle bound follows leaseTtlMs), as one simple query. */
  readonly begin: string;
  /** Those settings as one statement (rowLockSettings), for the pipelined messages after a BEGIN. */
  readonly settings: Statement;
  /**
   * What this loop's next claim lists, asked when a batch's COMMIT message is to carry that claim:
   * `{ plan }` (plan undefined for a subscription of one queue), or undefined when there is no queue
   * to list (every queue idle: queue-schedule.ts), and so nothing to claim at once.
   */
  readonly planNext: () => { readonly plan: ClaimPlan | undefined } | undefined;
  /** The lease statements with the row-lock retry, terminal and DLQ statements in their place, for OutcomeWriter. */
  readonly outcomeSql: SubscriberSql;
  readonly dlqTable: TableName | undefined;
  readonly logger: Logger;
  readonly emit: Emit;
  readonly renderError: RenderError;
  readonly tally: Pick<ThroughputTally, 'count'>;
  /** A keyed row ended: the next row of its key may be claimed now. */
  readonly keyFreed: () => void;
  /** The batch committed retries, due at these performance.now() times (due-alarm.ts). */
  readonly retried: (dueAts: readonly number[]) => void;
  readonly handler: Handler;
  /** deliver()'s dependencies but the handler and the writer, which are the batch's. */
  readonly deliverDeps: Omit<DeliverDeps, 'handler' | 'writer'>;
  /** True once stop() began: the batch starts no more rows and commits what finished. */
  readonly stopping: () => boolean;
  /** The subscription's `concurrency` slots, shared with its other loops' batches. */
  readonly slots: HandlerSlots;
  /** The id range (lowest, highest) of the subscription's other batch still open, if any: the claim skips it. */
  readonly otherBatch: (self: RowLockBatch) => IdRange | undefined;
  /** Whether the loop claims again at once after a batch of `claimed` rows whose handlers took `handlersMs`. */
  readonly claimsAgain: (claimed: number, handlersMs: number) => boolean;
  /**
   * Which queues a claim over several lists (queue-schedule.ts), shared by the subscription's loops;
   * undefined for one queue. The claim's report rows go to it (learn) before its rows are decoded.
   */
  readonly schedule: QueueSchedule | undefined;
  /** The rows of the subscription's batches whose COMMIT went unanswered, while the server is asked: every claim is shown to it. */
  readonly unsettled: UnsettledWrites;
  /** The subscription's side of those questions (RowLockQuestions). */
  readonly questions: RowLockQuestions;
}

/**
 * What a row-lock subscription does with its batches' questions about a COMMIT whose answer was
 * lost: stop() waits for them within its budget (`asking` hands it each one), hurries them (a
 * question then asks again at once instead of after its pause), and gives up on them when its
 * budget ran out (`givenUp`: the question returns what it last heard).
 */
export interface RowLockQuestions {
  asking(question: Promise<void>): void;
  readonly hurry: Hurry;
  givenUp(): boolean;
}

/** The lowest and highest id of a batch's rows (bigint texts). */
export type IdRange = readonly [string, string];

/**
 * What a batch hands its loop's next batch under a backlog: its connection, already in that batch's
 * transaction (the COMMIT message began it), and, when that message also carried the next claim
 * (a pipelined message, see RowLockBatch #commit), the rows it claimed and the plan it listed.
 */
export interface HandOver {
  readonly client: pg.PoolClient;
  readonly claimed?: Claim & { readonly plan: ClaimPlan | undefined };
}

/** A claim's rows, decoded, and the transaction id their locks assigned (undefined: no row, no id). */
interface Claim {
  readonly rows: readonly ClaimedRecord[];
  readonly xid: string | undefined;
}

/** The claim's rows as texts, decoded; the transaction id from the first (every row carries it: XID_FIELD). */
function decodeClaim(rows: readonly RowFields[]): Claim {
  return { rows: rows.map(decodeClaimedRow), xid: rows[0]?.[XID_FIELD] ?? undefined };
}

/**
 * A batch's ids are given as a range to the other loops' claims only when they are about contiguous
 * (a backlog drained in order): a range much wider than the batch would hold back rows it does not
 * hold (a retried row's old id next to new ones).
 */
const RANGE_SLACK = 2;

/**
 * The share of leaseTtlMs during which a batch starts rows: a row starts only while at least the
 * rest (half of leaseTtlMs) is left before the batch's deadline, which is the least any started
 * handler gets. Without it rows started until the deadline, and a healthy 150 ms handler started
 * 900 ms into a 1,000 ms batch failed with HandlerTimeoutError (dead-lettered as `rejected` under
 * reject_on_error: review; test/integration/row-lock-mode.test.ts). Half, as token mode releases a
 * buffered row unstarted once it waited half its lease (subscription.ts). The rows not started go
 * back unlocked and uncounted at the batch's COMMIT, which comes when its last started handler
 * ends, and the first loop claims them again at once (row-lock-subscription.ts: `unstarted`).
 */
const START_BUDGET_SHARE = 1 / 2;

/**
 * How long after its deadline (as a share of leaseTtlMs) a batch waits for deliveries that are
 * still undecided before it fails them (#failStuck): their handlers were already failed at the
 * deadline (DeliverySignal.timeOut), so what is left is a consume middleware's own work; a quarter,
 * as token mode's sweep.
 */
const STUCK_GRACE_SHARE = 1 / 4;

/**
 * A handed-over connection (RowLockBatch.handedOver) its loop will not use (it stopped): the
 * transaction the COMMIT message began is rolled back (with the locks of the claim it carried: those
 * rows were never started, and stay as they were) and the connection goes back to the pool, or is
 * destroyed when that fails.
 */
export async function releaseHandedOver(client: pg.PoolClient, db: StatementRunner): Promise<void> {
  try {
    await client.query(db.bounded({ text: 'ROLLBACK' }));
    client.removeListener('error', ignore);
    client.release();
  } catch (error) {
    client.release(error instanceof Error ? error : new Error(String(error)));
  }
}

/**
 * Orders two ids (`id::text` of a non-negative bigint, no leading zeros) by value without BigInt: a
 * longer text is a larger number.
 */
function compareIds(a: string, b: string): number {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The batch's id range, or undefined when its ids are spread wider than RANGE_SLACK × their count (or negative). */
export function idRange(rows: readonly ClaimedRecord[]): IdRange | undefined {
  const first = rows[0];
  if (first === undefined) return undefined;
  let low = first.id;
  let high = low;
  for (const row of rows) {
    const { id } = row;
    if (id.startsWith('-')) return undefined;
    if (compareIds(id, low) < 0) low = id;
    else if (compareIds(id, high) > 0) high = id;
  }
  return BigInt(high) - BigInt(low) < BigInt(rows.length * RANGE_SLACK) ? [low, high] : undefined;
}

/**
 * One batch of a `lease: 'row-lock'` subscription (architecture/row-lock-mode.md): a connection
 * from the pool, BEGIN, a claim that locks up to `limit` rows without writing them, their handlers
 * in the subscription's shared handler slots through the delivery core (deliver.ts: middlewares, events, ack policy, retry
 * strategy, maxDeliveries), their outcomes written in the same transaction (retries and DLQ moves
 * as they are decided, the acks in one DELETE at the end), COMMIT.
 *
 * States:
 *   claiming   BEGIN and the claim in flight.
 *   running    handlers run, each in one of the subscription's `concurrency` slots (`#running`:
 *              their signals). A delivery is decided when the writer hears its outcome — an ack is
 *              kept for the DELETE, a retry or a terminal write runs at once on the batch's
 *              connection — or when its delivery ended without one (deliver() returned true, or
 *              #deliveryEnds heard its end); its slot is given back then.
 *   closed     no handler is started any more (all ran, stop() began, half of leaseTtlMs is
 *              spent: START_BUDGET_SHARE, or stop() gave up waiting: abandon()). A delivery that
 *              finishes now writes nothing (deliver's `abandoned`): its row is left as it was,
 *              unlocked at COMMIT.
 *   committed  the outcomes landed: events, counts and `ctx.written` are reported now, never before.
 *   failed     any statement failed (a dead connection, a failed write, a COMMIT that rolled back):
 *              the connection is destroyed, the server rolls back, every row of the batch is
 *              unlocked as it was and redelivered; nothing is reported but `ctx.written` 'failed'.
 * The batch is bounded by leaseTtlMs from its claim. It starts rows during the first half of it
 * only (START_BUDGET_SHARE), so every started handler has at least the other half; rows not started
 * by then are left unlocked for the next claim. At the deadline the running handlers' signals are
 * aborted and, when async, their deliveries fail with HandlerTimeoutError (a retry under the
 * default ack policy): only a handler slower than half of leaseTtlMs meets it.
 */
export class RowLockBatch {
  readonly #deps: RowLockBatchDeps;
  readonly #writer: OutcomeWriter;
  readonly #deliverDeps: DeliverDeps;
  #client: pg.PoolClient | undefined;
  readonly #acks: AckEntry[] = [];
  readonly #writes: Promise<OutcomeWrite>[] = [];
  /** The rows of its retry and terminal writes (#writes), as claimed. */
  readonly #writtenRecords: ClaimedRecord[] = [];
  readonly #events: OutboxEvent[] = [];
  readonly #counts: [string, Outcome][] = [];
  #keyFreed = false;
  /** The due times of the retries this batch wrote, reported at COMMIT. */
  readonly #retriedDueAts: number[] = [];
  /** Resolved with whether the batch committed; made when a retry or terminal write awaits it. */
  #committed: Promise<boolean> | undefined;
  #settleCommitted: ((committed: boolean) => void) | undefined;
  /** The deliveries running (not decided yet), by lease: the signal that aborts each. */
  readonly #running = new Map<Lease, DeliverySignal>();
  /** Resolves #runAll's wait once the last running delivery is decided. */
  #allDecided: (() => void) | undefined;
  #closed = false;
  /** Its COMMIT was sent: a failure after it may be a COMMIT that landed with its answer lost. */
  #commitSent = false;
  /** The transaction id its claim's row locks assigned (undefined: it locked nothing). */
  #xid: string | undefined;
  #expired = false;
  /** Its start budget is spent (START_BUDGET_SHARE of leaseTtlMs): no more rows start. */
  #startsOver = false;
  /** Its wait for a handler slot (#runAll), withdrawn when its start budget is spent. */
  #slotWait: SlotWaiter | undefined;
  /** The start budget's end, then the deadline (one armed at a time). */
  #timer: NodeJS.Timeout | undefined;
  /** How long its handlers took, from the first start to the last decision (ms). */
  handlersMs = 0;
  /** Rows it claimed and did not start (start budget spent, stop()): unlocked as they were at its COMMIT. */
  unstarted = 0;
  /** This batch's rows as an id range, while it is open (idRange): the other loop's claims skip it. */
  range: IdRange | undefined;
  /**
   * Under a backlog the COMMIT carries the next batch's BEGIN (and, pipelined, its claim): the
   * connection, in that new transaction, for this loop's next batch (run()'s `begun`). Undefined
   * when the batch released it.
   */
  handedOver: HandOver | undefined;
  /** The claim's limit, kept for the next claim a COMMIT message carries. */
  #limit = 0;
  /** The batch committed, but its connection is not fit to go back to the pool (#commit): released with this error. */
  #discard: Error | undefined;
  /** The queues of the rows the claim returned: each may have a row ready again once the batch ended (rowReturned). */
  readonly claimedQueues = new Set<string>();

  constructor(deps: RowLockBatchDeps) {
    this.#deps = deps;
    // Buffered until COMMIT, and still known for what its recorders read: the writer then builds
    // no `acked` event that none of them reads (emitterOf), as a lease-mode writer does not.
    const buffered = deferredEmit(deps.emit, (event: OutboxEvent) => this.#events.push(event));
    this.#writer = new OutcomeWriter({
      db: { run: (statement, values) => this.#deps.db.runOn(this.#connection(), statement, values) },
      sql: deps.outcomeSql,
      dlq: deps.deliverDeps.options.dlq,
      dlqTable: deps.dlqTable,
      subscriber: deps.deliverDeps.options.name,
      logger: deps.logger,
      emit: buffered,
      renderError: deps.renderError,
      tally: { count: (queue, outcome) => this.#counts.push([queue, outcome]) },
      keyFreed: () => {
        this.#keyFreed = true;
      },
      // Due once the batch commits: the alarm is set then (#reportCommitted).
      retried: (dueAt) => this.#retriedDueAts.push(dueAt),
    });
    this.#deliverDeps = {
      ...deps.deliverDeps,
      handler: deps.handler,
      writer: {
        ack: (lease, durationSeconds, written) => {
          this.#acks.push({ lease, durationSeconds, written });
          this.#decided(lease);
        },
        retry: (lease, run, delayMs, error) => this.#afterCommit(lease, this.#writer.retry(lease, run, delayMs, error)),
        terminal: (lease, reason, error, run) => this.#afterCommit(lease, this.#writer.terminal(lease, reason, error, run)),
      },
    };
  }

  /** Handlers of this batch running now. */
  get running(): number {
    return this.#running.size;
  }

  /**
   * Runs the batch; resolves with the number of rows claimed once its transaction committed.
   * Throws (after rolling back and reporting its deliveries' writes as failed) when a statement
   * failed. `claimed` is told when the claim statement returned. `begun`: the previous batch's
   * connection, already in this batch's transaction (handedOver); otherwise one is checked out.
   */
  async run(limit: number, claimed: () => void, begun?: HandOver, plan?: ClaimPlan): Promise<number> {
    const { db } = this.#deps;
    const client = begun?.client ?? (await db.checkout());
    if (begun === undefined) client.on('error', ignore);
    this.#client = client;
    this.#limit = limit;
    let rows: readonly ClaimedRecord[] = [];
    try {
      const claim = begun?.claimed ?? (await this.#begin(client, limit, begun === undefined, plan));
      rows = claim.rows;
      this.#xid = claim.xid;
      claimed();
      for (const row of rows) this.claimedQueues.add(row.queue);
      this.range = idRange(rows);
      emitFetched(
        this.#deps.emit,
        this.#deps.deliverDeps.options.name,
        (begun?.claimed === undefined ? plan : begun.claimed.plan)?.queues ?? this.#deps.deliverDeps.options.queues,
        rows,
        queueOfRow,
      );
      if (rows.length > 0) await this.#runAll(rows);
      await this.#commit(this.#deps.claimsAgain(rows.length, this.handlersMs));
    } catch (error) {
      this.range = undefined;
      if (this.#commitUnanswered(error)) this.#askServer(client, error, rows.length);
      else this.#failed(client, error, rows.length);
      throw error;
    }
    this.range = undefined;
    if (this.#discard !== undefined) client.release(this.#discard);
    else if (this.handedOver === undefined) {
      client.removeListener('error', ignore);
      client.release();
    }
    this.#reportCommitted();
    return rows.length;
  }

  /**
   * BEGIN (with the settings: `open`; a handed-over connection is in its transaction already) and
   * the claim: one pipelined message (DecodedQuery's preludes) when the client runs them, else the
   * BEGIN as one simple query and the claim after it (queued together, one await).
   */
  async #begin(client: pg.PoolClient, limit: number, open: boolean, plan: ClaimPlan | undefined): Promise<Claim> {
    const { db, settings } = this.#deps;
    if (!open) return await this.#claim(client, limit, plan);
    const claim = await this.#claimAfter(client, [prelude(BEGIN), prelude(settings)], limit, plan);
    if (claim !== undefined) return claim;
    // node-postgres sends in call order.
    const began = client.query(db.bounded({ text: this.#deps.begin }));
    const [, claimed] = await Promise.all([began, this.#claim(client, limit, plan)]);
    return claimed;
  }

  /**
   * The claim's statement and values: claimOne for one queue; with a schedule (several queues) it
   * lists `plan`'s queues and its rows end with the per-queue reports (`reported`), which the
   * schedule takes first (queue-schedule.ts learn), as a lease-mode claim's. A plan that lists one
   * queue sends claimOne with that queue's report: the same rows and report as claimMany over it,
   * one locking walk instead of claimMany's heads, cutoff, walk and fill.
   */
  #claimStatement(limit: number, plan: ClaimPlan | undefined): { statement: Statement; values: unknown[]; reported: boolean } {
    const { sql, schedule } = this.#deps;
    const { queues, leaseTtlMs } = this.#deps.deliverDeps.options;
    const other = this.#deps.otherBatch(this);
    const range = [other?.[0] ?? null, other?.[1] ?? null];
    if (queues.length === 1)
      return { statement: sql.claimOne, values: [queues[0], leaseTtlMs, limit, ...range], reported: false };
    if (schedule === undefined || plan === undefined) throw new Error('a row-lock claim over several queues without its plan');
    const [listed, ...more] = plan.queues;
    return listed !== undefined && more.length === 0
      ? { statement: sql.claimOneReported, values: [listed, leaseTtlMs, limit, ...range], reported: true }
      : { statement: sql.claimMany, values: [plan.queues, leaseTtlMs, limit, ...range], reported: true };
  }

  /** A claim's rows decoded; with their reports (claimMany, claimOneReported: `reported`) after the schedule learned from those. */
  #decoded(rows: readonly RowFields[], plan: ClaimPlan | undefined, reported: boolean): Claim {
    const { schedule, unsettled } = this.#deps;
    let claim: Claim;
    if (!reported) claim = decodeClaim(rows);
    else {
      if (schedule === undefined || plan === undefined) throw new Error('a row-lock claim over several queues without its plan');
      claim = decodeClaim(schedule.learn(plan, rows, performance.now()));
    }
    unsettled.claimed(claim.rows);
    return claim;
  }

  /** The claim alone (StatementRunner.decodedOn). */
  async #claim(client: pg.PoolClient, limit: number, plan: ClaimPlan | undefined): Promise<Claim> {
    const { db } = this.#deps;
    const { statement: claim, values, reported } = this.#claimStatement(limit, plan);
    return this.#decoded(await db.decodedOn(client, claim, values, asFields), plan, reported);
  }

  /**
   * `preludes`, then the claim, in one round trip (StatementRunner.pipelineOn): the claimed rows and
   * every statement's command tag; undefined, with nothing sent, when the client cannot pipeline.
   * `answered` is given the tags before the rows are decoded or learned from (a claim over several
   * queues), so that a COMMIT among the preludes is known to have landed even if that fails.
   */
  async #claimAfter(
    client: pg.PoolClient,
    preludes: readonly Prelude[],
    limit: number,
    plan: ClaimPlan | undefined,
    answered: (tags: readonly string[]) => void = () => undefined,
  ): Promise<Claim | undefined> {
    const { db } = this.#deps;
    const { statement: claim, values, reported } = this.#claimStatement(limit, plan);
    const answer = await db.pipelineOn(client, preludes, claim, values, asFields);
    if (answer === undefined) return undefined;
    answered(answer.tags);
    return this.#decoded(answer.rows, plan, reported);
  }

  /** stop() gave up waiting: abort the running handler and commit what finished without it. */
  abandon(reason: Error): void {
    this.#closed = true;
    for (const [lease, signal] of [...this.#running]) {
      // Timed out, not only aborted: an async handler that never settles is failed now (nothing of
      // it is written: the batch is closed), so its delivery ends for its observers too.
      signal.timeOut(reason);
      this.#decided(lease);
    }
  }

  #connection(): pg.PoolClient {
    if (this.#client === undefined) throw new Error('a row-lock batch wrote before its claim');
    return this.#client;
  }

  readonly #isClosed = (): boolean => this.#closed;

  /**
   * Starts the rows in order as slots free up, and resolves once every started one is decided.
   * Stops starting them once closed, stopping or past the start budget (START_BUDGET_SHARE).
   */
  async #runAll(rows: readonly ClaimedRecord[]): Promise<void> {
    const { leaseTtlMs } = this.#deps.deliverDeps.options;
    const { slots } = this.#deps;
    const startBudgetMs = leaseTtlMs * START_BUDGET_SHARE;
    const startedAt = performance.now();
    // One timer armed at a time, and a second one only for a batch still running at half its
    // budget: a fast batch (the benchmarked case) ends before the first fires.
    this.#timer = setTimeout(() => {
      this.#endStarts();
      this.#timer = setTimeout(
        () => {
          this.#expire(leaseTtlMs);
        },
        Math.max(0, leaseTtlMs - (performance.now() - startedAt)),
      );
    }, startBudgetMs);
    let started = 0;
    for (const record of rows) {
      if (this.#stopsStarting()) break;
      // Past the start budget it stops waiting for a slot: the slots are shared with the other
      // loops' batches, and this one's rows would stay locked behind their handlers for nothing.
      if (!slots.tryTake() && !(await this.#slot())) break;
      // The timers cannot fire between synchronous handlers (they run in microtasks): the clock
      // can. Read once per row, here, just before the start it decides.
      if (this.#stopsStarting() || this.#startBudgetSpent(performance.now() - startedAt, startBudgetMs, leaseTtlMs)) {
        slots.give();
        break;
      }
      this.#start({ record, token: ROW_LOCK_TOKEN, leasedAt: startedAt });
      started += 1;
    }
    this.unstarted = rows.length - started;
    if (this.unstarted > 0 && this.#startsOver && !this.#expired) {
      this.#deps.logger.debug(
        { subscriber: this.#deps.deliverDeps.options.name, started, unstarted: this.unstarted, leaseTtlMs },
        'row-lock batch spent half its leaseTtlMs starting rows: the rest go back unlocked, uncounted, for the next claim (lower fetchBatchSize for handlers this slow)',
      );
    }
    if (this.#running.size > 0) await new Promise<void>((resolve) => (this.#allDecided = resolve));
    this.handlersMs = performance.now() - startedAt;
    clearTimeout(this.#timer);
  }

  /** Resolves true once a handler slot was taken for this batch, false once its starts ended first. */
  #slot(): Promise<boolean> {
    if (this.#startsOver) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      this.#slotWait = resolve;
      this.#deps.slots.wait(resolve);
    });
  }

  #stopsStarting(): boolean {
    return this.#closed || this.#startsOver || this.#expired || this.#deps.stopping();
  }

  /** By the clock: whether `elapsedMs` is past the start budget (then no more rows start), or past the deadline. */
  #startBudgetSpent(elapsedMs: number, startBudgetMs: number, leaseTtlMs: number): boolean {
    if (elapsedMs < startBudgetMs) return false;
    this.#endStarts();
    if (elapsedMs >= leaseTtlMs && !this.#expired) this.#expire(leaseTtlMs);
    return true;
  }

  /** No more rows start; a wait for a slot ends. */
  #endStarts(): void {
    this.#startsOver = true;
    if (this.#slotWait !== undefined) this.#deps.slots.withdraw(this.#slotWait);
  }

  /**
   * One delivery in a taken slot. Decided: the writer heard its ack, retry or terminal write, or
   * the delivery ended (it wrote nothing). A retry's delivery ends after the COMMIT, which waits
   * for every delivery to be decided: so the slot is given back at the decision, not at the end.
   */
  #start(lease: Lease): void {
    const signal = new DeliverySignal();
    this.#running.set(lease, signal);
    let endedNow: boolean;
    try {
      endedNow = deliver(lease, signal, this.#isClosed, this.#deliverDeps, this.#deliveryEnds);
    } catch (error) {
      // Only a fault outside the handler (deliver() catches the handler's own): nothing was decided
      // for this row, so it stays in the table and is claimed again after this batch, like a row
      // of a batch that rolled back, while the rest of the batch commits.
      this.#deliveryFailed(error);
      endedNow = true;
    }
    if (endedNow) this.#decided(lease);
  }

  /** Where a delivery that did not end synchronously reports its end (see #start). */
  readonly #deliveryEnds: DeliveryEnds<DeliverySignal> = {
    ended: (lease) => {
      this.#decided(lease);
    },
    failed: (lease, _signal, error) => {
      // The slot is given back even when logging the failure throws.
      try {
        this.#deliveryFailed(error);
      } finally {
        this.#decided(lease);
      }
    },
  };

  #deliveryFailed(error: unknown): void {
    this.#deps.logger.error(
      { subscriber: this.#deps.deliverDeps.options.name, err: errorMessage(error) },
      'delivery failed unexpectedly',
    );
  }

  /** Marks a delivery decided (once): its slot is given back, and the last one ends #runAll's wait. */
  #decided(lease: Lease): void {
    if (!this.#running.delete(lease)) return;
    this.#deps.slots.give();
    if (this.#running.size === 0) this.#allDecided?.();
  }

  /** The deadline: the running handlers are aborted (and fail, when async); no more rows start. */
  #expire(leaseTtlMs: number): void {
    this.#expired = true;
    this.#endStarts();
    const error = new HandlerTimeoutError(leaseTtlMs);
    for (const signal of this.#running.values()) signal.timeOut(error);
    this.#deps.logger.warn(
      { subscriber: this.#deps.deliverDeps.options.name, leaseTtlMs },
      'row-lock batch ran past leaseTtlMs: the running handler fails with HandlerTimeoutError, the rows not started yet go back unlocked',
    );
    // The start budget's or the deadline's timer may still be armed (the clock, read between
    // synchronous handlers, got here first): one timer at a time.
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#failStuck(error);
    }, leaseTtlMs * STUCK_GRACE_SHARE);
  }

  /**
   * Deliveries still undecided a while after the deadline are stuck outside their handler (a
   * consume middleware that does not return: its handler was failed at the deadline by its
   * signal's timeOut): each fails with `error` under the ack policy, written in this batch's transaction,
   * so the batch commits. Before, it waited for them for good: its rows stayed locked, its
   * connection held, and its loop claimed nothing more. A stuck chain that ends later writes
   * nothing (closed), nor starts its handler (its signal was timed out).
   */
  #failStuck(error: HandlerTimeoutError): void {
    if (this.#running.size === 0) return;
    this.#closed = true;
    for (const lease of [...this.#running.keys()]) {
      this.#deps.logger.error(
        { subscriber: this.#deps.deliverDeps.options.name, messageId: lease.record.id, leaseTtlMs: error.timeoutMs },
        'row-lock delivery still undecided after its batch deadline (a consume middleware that does not return): failing it with HandlerTimeoutError under the ack policy so the batch can commit',
      );
      failStuck(lease, error, this.#deliverDeps)?.then(undefined, (failure: unknown) => {
        this.#deliveryFailed(failure);
      });
    }
  }

  /** A retry or terminal write: decided now, its result reported once the batch committed (or not). */
  async #afterCommit(lease: Lease, write: Promise<OutcomeWrite>): Promise<OutcomeWrite> {
    this.#writes.push(write);
    this.#writtenRecords.push(lease.record);
    this.#committed ??= new Promise<boolean>((resolve) => {
      this.#settleCommitted = resolve;
    });
    this.#decided(lease);
    const [result, committed] = await Promise.all([write, this.#committed]);
    return committed ? result : 'failed';
  }

  /**
   * The writes decided so far, then the acks' DELETE and the COMMIT in one message (one round
   * trip). With `claimsAgain` (the loop claims again at once: a backlog) and nobody waiting for a
   * connection, the next batch's BEGIN and settings follow the COMMIT in that message, and,
   * pipelined, the next batch's claim too; the connection is handed over in that new transaction.
   * So under a backlog a batch costs one round
   * trip, plus one for each retry or terminal write its handlers decided (BENCHMARKS.md, issue 18
   * round seven; before, the claim had a round trip of its own). A statement's error stops the
   * message there (the server runs none after it), so a failed DELETE or COMMIT never begins the
   * next transaction nor claims; a COMMIT that answered ROLLBACK throws, and the connection, in the
   * transaction begun after it, is destroyed with its locks (#failed). On a client that cannot
   * pipeline (another node-postgres copy), the same statements go as one simple query, the acks
   * as a literal list (ackBatch), and the next batch claims on its own.
   * Throws when anything of it failed.
   */
  async #commit(claimsAgain: boolean): Promise<void> {
    this.#closed = true;
    const client = this.#connection();
    const { db, sql } = this.#deps;
    const writes = await Promise.all(this.#writes);
    if (writes.includes('failed')) {
      throw new Error('an outcome write of the row-lock batch failed, which aborted its transaction');
    }
    // Chained only while nobody waits for a connection: a loop that kept its connection from batch
    // to batch for a whole backlog would starve the pool's other users (token subscriptions' claims
    // and acks, publishes) of the connection they got between batches before. Read once the
    // batch's writes are in, as the COMMIT leaves: read before them, a checkout that began waiting
    // meanwhile waited a batch more.
    const chain = claimsAgain && db.waiting === 0;
    const ids = this.#acks.map((ack) => ack.lease.record.id);
    const acks: Prelude[] = ids.length > 0 ? [prelude(sql.ack, [idArray(ids)])] : [];
    // The COMMIT's answer is the statement after the acks' DELETE, in either form.
    const committed = (tags: readonly (string | undefined)[]): void => {
      const commit = tags[acks.length];
      // COMMIT of a transaction that failed answers ROLLBACK, without an error; a BEGIN after it
      // then opened a transaction of nothing, which the connection's release (destroyed) ends.
      if (commit !== 'COMMIT') throw new CommitRefused(`the row-lock batch's COMMIT answered ${commit ?? 'nothing'}`);
    };
    // A connection node-postgres already gave up on (an error while the handlers ran, or closed)
    // fails the COMMIT without sending it: its transaction ended with its session, so the batch is
    // rolled back for certain. Marked sent, it was taken for a COMMIT whose answer was lost, and the
    // server was asked about it, for as long as stop() waits when the server is out of reach.
    if (notQueryable(client)) throw new Error("the row-lock batch's connection was lost before its COMMIT was sent");
    this.#commitSent = true;
    if (db.pipelines(client)) {
      // Nothing to list (every queue idle): nothing to claim at once, and no transaction to hand over.
      const next = chain ? this.#deps.planNext() : undefined;
      if (next === undefined) {
        const answer = await db.pipelineOn(client, acks, COMMIT, [], asFields);
        if (answer === undefined) throw new Error('a row-lock batch pipelined on a client that cannot');
        committed(answer.tags);
        return;
      }
      // The COMMIT's answer is flushed: should the claim after it fail, the batch knows it committed.
      const preludes = [...acks, { ...prelude(COMMIT), flush: true }, prelude(BEGIN), prelude(this.#deps.settings)];
      // Set by the callback once the COMMIT's answer is in (TypeScript cannot see that assignment).
      let landed = false as boolean;
      let claim: Claim | undefined;
      try {
        claim = await this.#claimAfter(client, preludes, this.#limit, next.plan, (tags) => {
          committed(tags);
          landed = true;
        });
      } catch (error) {
        if (!landed && tagsBeforeFailure(error)?.[acks.length] !== 'COMMIT') throw error;
        // The COMMIT landed and what followed it failed (the next claim: a statement timeout, the
        // connection lost after the COMMIT's answer, its rows undecodable): this batch committed
        // and reports so; the connection, in the next batch's transaction or broken, is discarded
        // with whatever that claim locked, and the loop claims again on another.
        this.#discard = error instanceof Error ? error : new Error(String(error));
        // Should that claim's reports have been learned (its rows failed to decode), they left out
        // the rows it locked, which go back with the discarded connection: its queues are listed
        // again, as queues whose rows came back.
        for (const queue of next.plan?.queues ?? []) this.#deps.schedule?.rowReturned(queue);
        this.#deps.logger.warn(
          { subscriber: this.#deps.deliverDeps.options.name, err: errorMessage(error) },
          'row-lock batch committed, but the next claim sent with its COMMIT failed; the loop claims again on a new connection',
        );
        return;
      }
      if (claim === undefined) throw new Error('a row-lock batch pipelined on a client that cannot');
      this.handedOver = { client, claimed: { ...claim, plan: next.plan } };
      return;
    }
    const text = `${ids.length > 0 ? `${sql.ackBatch(ids)}; ` : ''}COMMIT${chain ? `; ${this.#deps.begin}` : ''}`;
    // node-postgres answers a message of several statements with one result per statement.
    const answered: unknown = await client.query(db.bounded({ text }));
    committed(((Array.isArray(answered) ? answered : [answered]) as pg.QueryResult[]).map((result) => result.command));
    if (chain) this.handedOver = { client };
  }

  /** After COMMIT: the acks' events, every buffered event and count, the key wake-up, the writes' results. */
  #reportCommitted(): void {
    for (const ack of this.#acks) this.#writer.ackedInTransaction(ack.lease, ack.durationSeconds, 'deleted', ack.written);
    for (const event of this.#events) this.#deps.emit?.(event);
    for (const [queue, outcome] of this.#counts) this.#deps.tally.count(queue, outcome);
    if (this.#keyFreed) this.#deps.keyFreed();
    if (this.#retriedDueAts.length > 0) this.#deps.retried(this.#retriedDueAts);
    this.#settleCommitted?.(true);
  }

  /** The batch failed: no more rows start, every delivery is decided, the connection is destroyed (the server rolls back what did not land). */
  #end(client: pg.PoolClient, error: unknown): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const lease of [...this.#running.keys()]) this.#decided(lease);
    try {
      client.release(error instanceof Error ? error : new Error(String(error)));
    } catch {
      // A pool that already ended: the connection is closed with it.
    }
  }

  /**
   * The COMMIT was sent and its answer never came (a client-side timeout, a connection lost or
   * reset, the backend terminated): it may have landed. Only the server can tell, and a batch's
   * rows must not be reported rolled back (their acks missing from every count, the log saying they
   * run again) when they were handled. Also while stopping, which waits for the answer within its
   * budget (RowLockQuestions); not once it gave up waiting: its pool is closing.
   * An error the server answered a statement of it with (util/unanswered.ts: one that did not end
   * the session) means the transaction did not commit, as does a COMMIT answered `ROLLBACK`
   * (CommitRefused).
   */
  #commitUnanswered(error: unknown): boolean {
    if (!this.#commitSent || this.#xid === undefined || this.#deps.questions.givenUp() || error instanceof CommitRefused)
      return false;
    return unanswered(error);
  }

  /** A COMMIT sent without an answer: the batch ends now, and reports what the server says became of it (#settleUnanswered). */
  #askServer(client: pg.PoolClient, error: unknown, rows: number): void {
    this.#end(client, error);
    this.#deps.questions.asking(
      this.#settleUnanswered(this.#xid as string, error, rows).catch((failure: unknown) => {
        this.#deliveryFailed(failure);
      }),
    );
  }

  /**
   * Asks the server (a pool connection) what became of transaction `xid` until it knows: committed
   * (and its rows agree) → the batch's acks, events and counts are reported now, as after an
   * answered COMMIT; aborted, or committed where its rows say that id is another transaction's (a
   * failover: transaction-outcome.ts) → reported rolled back. 'in progress' (its COMMIT still on
   * the way, a backend not yet ended) and a server out of reach are asked again, with a growing
   * pause, within the idle bound (util/idle-bound.ts: the server ends an idle transaction by then);
   * once stop() began, at once and then every 100 ms, for as long as stop() waits (within its
   * graceful budget: RowLockQuestions). Still not known then: reported as unknown, with what that
   * means for its rows.
   */
  async #settleUnanswered(xid: string, error: unknown, rows: number): Promise<void> {
    const { logger, deliverDeps } = this.#deps;
    const fields = { subscriber: deliverDeps.options.name, rows, xid, err: errorMessage(error) };
    const written: WrittenRows = {
      unwritten: this.#deps.outcomeSql.unwritten,
      records: [...this.#acks.map((ack) => ack.lease.record), ...this.#writtenRecords],
    };
    const watch = this.#deps.unsettled.watch(written.records);
    let status: TransactionOutcome;
    try {
      const { questions } = this.#deps;
      status = await transactionOutcome(this.#deps.db, xid, written, idleBoundMs(deliverDeps.options.leaseTtlMs), {
        giveUp: () => questions.givenUp(),
        watch,
        hurry: questions.hurry,
      });
    } finally {
      watch.end();
    }
    if (status === 'committed') {
      logger.warn(
        fields,
        "row-lock batch committed, but its COMMIT's answer was lost: the server says it landed; its acks are reported now",
      );
      this.#reportCommitted();
      return;
    }
    if (status === 'aborted' || status === 'reused' || status === 'reclaimed') {
      this.#reportNotCommitted();
      const why = { aborted: undefined, reused: ID_REUSED, reclaimed: RECLAIMED }[status];
      logger.error(fields, why === undefined ? ROLLED_BACK : `${ROLLED_BACK}. ${why}`);
      return;
    }
    this.#reportNotCommitted();
    logger.error(
      { ...fields, status: status ?? 'unknown' },
      "row-lock batch's COMMIT went unanswered and the server could not say whether it landed: its rows are handled if it did, delivered again if not; their acks are not counted",
    );
  }

  /** Nothing of the batch landed: its rows come back as they were. */
  #failed(client: pg.PoolClient, error: unknown, rows: number): void {
    this.#end(client, error);
    // A COMMIT the server answered (refused it, or an error of its own) did not land, stopping or not.
    const maybeLanded = this.#commitSent && !(error instanceof CommitRefused) && unanswered(error);
    this.#reportRolledBack(
      rows === 0 ? undefined : { subscriber: this.#deps.deliverDeps.options.name, rows, err: errorMessage(error) },
      maybeLanded,
    );
  }

  /** Nothing of it is known to have landed: its writes report failed (ctx.written), and so do the retries waiting for the COMMIT. */
  #reportNotCommitted(): void {
    for (const ack of this.#acks) ack.written?.('failed');
    this.#settleCommitted?.(false);
  }

  /** Rolled back: reported (#reportNotCommitted) and logged with `fields`, unless it had no rows (undefined). */
  #reportRolledBack(fields: Record<string, unknown> | undefined, maybeLanded: boolean): void {
    this.#reportNotCommitted();
    if (fields === undefined) return;
    // Stopping, a COMMIT sent and no answer: most likely stop() stopped waiting and its pool was
    // closed under a statement that hung (a frozen link), and that COMMIT may still land when the
    // link recovers.
    if (this.#deps.stopping() && maybeLanded) {
      this.#deps.logger.warn(
        fields,
        'row-lock batch ended by stop() without an answer to its COMMIT: its rows are delivered again, unless that COMMIT still landed',
      );
      return;
    }
    this.#deps.logger.error(fields, ROLLED_BACK);
  }
}
