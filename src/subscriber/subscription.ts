import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';

import { errorMessage, HandlerTimeoutError, LeaseLostError } from '../errors.js';
import type { CustomStatKeys } from '../instrumentation/custom-stats.js';
import type { MiddlewareChain } from '../instrumentation/middleware-chain.js';
import type { Emit } from '../instrumentation/recorders.js';
import type { ThroughputTally } from '../queues/throughput-tally.js';
import type { TableName } from '../schema/identifiers.js';
import { beforeDeadline } from '../util/deadline.js';
import type { Logger } from '../util/logger.js';
import type { StatementRunner } from '../util/statement-runner.js';
import { Wakeup } from '../util/wakeup.js';
import { type ClaimFailureReport, notStalled, pauseAfterFailure } from './claim-pacing.js';
import { decodeClaimedRow } from './claimed-row.js';
import { deliver, type DeliverDeps, type DeliveryEnds } from './deliver.js';
import { DeliveryTransaction } from './delivery-transaction.js';
import { DueAlarm } from './due-alarm.js';
import { emitFetched } from './fetched-events.js';
import type { PublishFollowUp } from './follow-up.js';
import { IdleProbe } from './idle-probe.js';
import type { Lease } from './lease.js';
import type { ClaimedRecord, Handler } from './message.js';
import { OutcomeWriter } from './outcome-writer.js';
import { type QueueSchedule, scheduleFor } from './queue-schedule.js';
import type { RenderError } from './render-error.js';
import { RunningDeliveries, type RunningDelivery } from './running-deliveries.js';
import { type MatchedPair, pairKey, pairValues, type SubscriberSql } from './sql.js';
import type { ResolvedSubscribeOptions } from './subscription-options.js';
import { UnsettledWrites } from './unsettled-writes.js';

export interface SubscriptionDeps {
  readonly db: StatementRunner;
  readonly sql: SubscriberSql;
  /** The DLQ table (undefined when off), for the outcome writer's explanation of a DLQ behind the code. */
  readonly dlqTable: TableName | undefined;
  readonly logger: Logger;
  readonly emit: Emit;
  readonly renderError: RenderError;
  readonly middlewares: MiddlewareChain;
  readonly customStats: CustomStatKeys;
  /** A claim in flight, or claims failing, for this long make the subscription report not alive (ping()). */
  readonly stallAfterMs: number;
  /** Told every claim error, to explain a missing table once (src/schema/explain-missing-table.ts). */
  readonly onClaimError: (error: unknown) => void;
  /** Told each time a claim found nothing and its loop goes to sleep (the Outbox opens its LISTEN connection at the first). */
  readonly onIdle: () => void;
  /** The Outbox's outcome counts for <table>_stats. */
  readonly tally: Pick<ThroughputTally, 'count'>;
  /** The Outbox's publish, for ctx.publish. */
  readonly followUp: PublishFollowUp;
}

/** A claim loop's wake-up, and whether it sleeps for capacity (only then does a freed slot wake it). */
interface Claimer {
  readonly wakeup: Wakeup;
  waiting: boolean;
  /** Asleep on its idle poll (the primary loop), for as long as the schedule said then. */
  polling: boolean;
  /** performance.now() when its claim in flight started; undefined when none is. */
  claimingSince: number | undefined;
}

/**
 * How long the buffer stays off (claims only for free slots) after a buffered row had to be
 * released, in leases: long enough that a slow phase does not over-claim again at once, short
 * enough that prefetch comes back once handlers are fast again.
 */
const PREFETCH_PAUSE_LEASES = 10;

/** Rows one releaseExpired statement gives back at most; a full one is followed by another. */
const RELEASE_EXPIRED_LIMIT = 1_000;

/** The $5 of a claim when nothing running here is old enough to be re-claimed. */
const NONE_RUNNING = '{}';
const queueOfLease = (lease: Lease): string => lease.record.queue;
const recordOf = (lease: Lease): ClaimedRecord => lease.record;

/**
 * One subscription: a claim loop that keeps a local buffer topped up, `concurrency` handler slots,
 * an acker that coalesces deletes, optional lease renewal, and a graceful stop.
 *
 * Claim loop states:
 *   running   claims min(fetchBatchSize, free capacity) when at least half a batch fits (or the
 *             buffer is empty); a non-empty fetch claims again at once; an empty one sleeps with
 *             jittered backoff from minPollIntervalMs to maxPollIntervalMs, woken early by NOTIFY,
 *             a freed slot, or stop(). A database error backs off exponentially (capped at 30 s).
 *   stopping  claims nothing more; rows returned by a fetch already in flight are released.
 *   stopped   the loop has exited.
 * Capacity is concurrency + fetchBatchSize rows leased at once (buffered + running), which bounds
 * how long a buffered row waits: size leaseTtlMs above 2 × (fetchBatchSize / concurrency) × p99.
 *
 * The lease budget of buffered rows (issue 13, item 1): a buffered row that has waited half its
 * lease is released unstarted (fenced by its token, its delivery uncounted), so it never expires
 * here to be re-claimed and counted again, and never reaches maxDeliveries without running. The
 * buffer is then off (claims only for free slots) for PREFETCH_PAUSE_LEASES leases. Rows this
 * subscription is running past half their lease are excluded from its own claims (sql.ts).
 *
 * Pipelined claims: while a backlog lasts, a second claim loop overlaps the first. It engages when
 * a claim came back full and the handlers ran out of buffered rows while it was in flight (they
 * outrun one claim at a time: a fast drain) — or, handlers that return without a promise, ran the
 * whole previous batch before it was sent — and stands down at the first claim that is not full.
 * Capacity is then concurrency + 2 × fetchBatchSize. Slow handlers never starve, so they never
 * engage it, and the lease arithmetic above holds for them; a fast drain's buffered rows wait
 * milliseconds.
 */
export class Subscription {
  readonly options: ResolvedSubscribeOptions;
  readonly #deps: SubscriptionDeps;
  readonly #writer: OutcomeWriter;
  readonly #deliverDeps: DeliverDeps;
  /** The claim loops: [0] always runs (NOTIFY wakes it); [1] only while pipelined (see above). */
  readonly #claimers: readonly Claimer[] = [
    { wakeup: new Wakeup(), waiting: false, polling: false, claimingSince: undefined },
    { wakeup: new Wakeup(), waiting: false, polling: false, claimingSince: undefined },
  ];
  /** Rows asked for by claims in flight: counted against capacity before they arrive. */
  #reserved = 0;
  /** Times a finished delivery found the buffer empty while a claim was in flight. */
  #starvations = 0;
  /** Deliveries that ended synchronously (deliver() returned true): see #claimLoop's `outran`. */
  #endedSynchronously = 0;
  /** Two claims in flight (see the class comment). */
  #pipelined = false;
  readonly #buffer: Lease[] = [];
  /** performance.now() of the last pause signal per queue (at most one entry per subscribed queue). */
  readonly #pauseSignals = new Map<string, number>();
  /**
   * Running deliveries. A row is not re-claimed by the subscription running it (the claim's $5);
   * should the exclusion miss (a claim's round trip longer than half the lease), the run adopts
   * the new lease (#adoptReclaimed).
   */
  readonly #inFlight = new RunningDeliveries();
  #state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  /** Rows of transactional runs whose COMMIT went unanswered, while the server is asked: every claim is shown to it. */
  readonly #unsettled = new UnsettledWrites();
  /** A #nudgeClaimers is queued for the end of this event-loop turn (#nudgeClaimersSoon). */
  #nudgeQueued = false;
  /** #pump is running (it is not re-entered). */
  #pumping = false;
  #loop: Promise<void> | undefined;
  #loopFailed = false;
  #abandoned = false;
  #renewTimer: NodeJS.Timeout | undefined;
  /** Rows whose transactional delivery holds their row lock (delivery-transaction.ts): the lock is their lease, not renewed. */
  readonly #locked = new Set<Lease>();
  /** When the claim loop last gave back expired leases (#releaseExpired): every half lease under a backlog. */
  #expiredReleasedAt = Number.NEGATIVE_INFINITY;
  /** The renewal statement in flight, if any: renewals never overlap, and stop() waits for the last one. */
  #renewing: Promise<void> | undefined;
  #idleWaiters: (() => void)[] = [];
  /** performance.now() of the first claim failure since the last success: alive (ping) turns false when it lasts. */
  #failingSince: number | undefined;
  /** performance.now() until which the buffer is off: claims only for free slots (see the class comment). */
  #prefetchPausedUntil = 0;
  #staleTimer: NodeJS.Timeout | undefined;
  /** Times out the runs past their bound (#boundRuns), when they have one. */
  #boundTimer: NodeJS.Timeout | undefined;
  /** Releases of stale buffered rows in flight: stop() waits for them. */
  readonly #releasing = new Set<Promise<void>>();
  /**
   * Which queues a claim lists (queue-schedule.ts), for a subscription over several: a claim lists
   * the queues with rows due and those it knows nothing of, not every queue (issue 18).
   */
  readonly #schedule: QueueSchedule | undefined;
  /** Wakes the first loop when a retry it wrote is due (due-alarm.ts); one queue only (the schedule does it for several). */
  readonly #retryAlarm: DueAlarm | undefined;
  /** Before an idle loop's long sleep: when a row turns claimable that nobody will announce (idle-probe.ts). */
  readonly #idleProbe: IdleProbe;

  constructor(options: ResolvedSubscribeOptions, handler: Handler, deps: SubscriptionDeps) {
    this.options = options;
    this.#deps = deps;
    this.#schedule = scheduleFor(options);
    this.#retryAlarm = this.#schedule === undefined ? new DueAlarm(() => this.#claimers[0]?.wakeup.notify()) : undefined;
    this.#idleProbe = new IdleProbe({
      db: deps.db,
      statement: deps.sql.nextClaimable,
      options,
      schedule: this.#schedule,
      held: () => this.#heldHere(),
      wake: (queue) => {
        this.wake(queue);
      },
      logger: deps.logger,
    });
    const writer = new OutcomeWriter({
      db: deps.db,
      sql: deps.sql,
      dlq: options.dlq,
      dlqTable: deps.dlqTable,
      subscriber: options.name,
      logger: deps.logger,
      emit: deps.emit,
      renderError: deps.renderError,
      tally: deps.tally,
      // The delivery ended (rowReturned) before its DELETE landed, and a claim that listed the queue
      // in between saw the key's next row still waiting for its turn: that try does not count.
      keyFreed: (queue) => {
        this.#schedule?.keyFreed(queue);
        this.#claimers[0]?.wakeup.notify();
      },
      retried: (dueAt) => this.#retryAlarm?.add(dueAt),
      leaseHeldUntil: (lease) => (lease.heldFrom ?? Number.NEGATIVE_INFINITY) + options.leaseTtlMs,
    });
    this.#writer = writer;
    this.#deliverDeps = {
      options,
      handler,
      writer,
      logger: deps.logger,
      emit: deps.emit,
      middlewares: deps.middlewares,
      customStats: deps.customStats,
      followUp: deps.followUp,
      ...(options.transactional
        ? {
            transactions: {
              begin: async (lease) => {
                // Out of renewal from before its lock is sent: a renewal would wait for the lock
                // (holding up every other row's renewal) and break a repeatable-read snapshot.
                // A renewal already sent may still include the row: the lock waits for it to end
                // (bounded like every statement), or under repeatable read the lock itself would
                // fail on the renewal's update, and the renewal would wait behind the handler.
                this.#locked.add(lease);
                const expiry = this.#lockExpiry(lease);
                const end = (): void => {
                  clearTimeout(expiry);
                  this.#locked.delete(lease);
                };
                if (this.#renewing !== undefined) await this.#renewing;
                // Without renewal the lease bounds the run (#lockExpiry), and the server is told so
                // too: a half-open connection then does not keep the row locked for hours. Under
                // renewal a run may be idle as long as it likes: the server probes the client by TCP
                // keepalive instead (architecture/transactional-consume.md).
                const idleBoundMs = options.leaseRenewIntervalMs === undefined ? options.leaseTtlMs : undefined;
                return await DeliveryTransaction.begin(
                  deps.db,
                  deps.sql,
                  lease,
                  options.isolationLevel,
                  end,
                  this.#unsettled,
                  idleBoundMs,
                );
              },
              settled: (lease, durationSeconds, result, written) => {
                writer.ackedInTransaction(lease, durationSeconds, result, written);
              },
            },
          }
        : {}),
    };
  }

  /**
   * False when the claim loop died unexpectedly (it should not: every error is caught), when every
   * claim has failed for stallAfterMs (the database answers SELECT 1 but refuses claims: a missing
   * migration, permissions), or when a claim has been in flight for longer than stallAfterMs
   * (statements are bounded by queryTimeoutMs, so such a claim is stuck where no timeout reaches).
   */
  get alive(): boolean {
    if (this.#state !== 'running' || this.#loopFailed) return false;
    return notStalled(this.#deps.stallAfterMs, this.#failingSince, this.#claimers);
  }

  /**
   * Called by the NOTIFY listener (and a local publish) for one of this subscription's queues;
   * `queue` undefined: any of them (a LISTEN (re)connect: notifications may have been missed).
   */
  wake(queue?: string): void {
    this.#schedule?.wake(queue);
    this.#claimers[0]?.wakeup.notify();
  }

  start(): void {
    if (this.#state !== 'new') return;
    this.#state = 'running';
    this.#loop = Promise.all(
      this.#claimers.map((claimer, index) =>
        this.#claimLoop(claimer, index === 0).catch((error: unknown) => {
          this.#loopFailed = true;
          this.#deps.logger.error({ subscriber: this.options.name, err: errorMessage(error) }, 'claim loop crashed');
        }),
      ),
    ).then(() => undefined);
    // Half a lease is the oldest a buffered row may get; checking every quarter lease releases it
    // with at least a quarter of its lease to spare (the database's clock started it a claim's
    // round trip before ours did).
    this.#staleTimer = setInterval(() => {
      this.#releaseStale();
    }, this.options.leaseTtlMs / 4);
    this.#staleTimer.unref();
    const boundMs = this.#runBoundMs();
    if (boundMs !== undefined) {
      // A quarter of the bound late at most; it runs on while stop() drains the handlers.
      this.#boundTimer = setInterval(() => {
        this.#boundRuns();
      }, boundMs / 4);
      this.#boundTimer.unref();
    }
    if (this.options.leaseRenewIntervalMs !== undefined) {
      this.#renewTimer = setInterval(() => {
        this.#renewing ??= this.#renewLeases().finally(() => {
          this.#renewing = undefined;
        });
      }, this.options.leaseRenewIntervalMs);
    }
  }

  get #failureReport(): ClaimFailureReport {
    return { logger: this.#deps.logger, onClaimError: this.#deps.onClaimError, subscriber: this.options.name };
  }

  /** A method, not a field read, so TypeScript does not narrow the state across awaits. */
  #running(): boolean {
    return this.#state === 'running';
  }

  #capacity(): number {
    const { concurrency, fetchBatchSize } = this.options;
    if (this.#prefetchPaused()) return concurrency;
    return concurrency + fetchBatchSize * (this.#pipelined ? 2 : 1);
  }

  #prefetchPaused(): boolean {
    return this.#prefetchPausedUntil > performance.now();
  }

  /** A buffered row that waited this long is released instead of run (see the class comment). */
  #isStale(lease: Lease, now: number): boolean {
    return now - lease.leasedAt >= this.options.leaseTtlMs / 2;
  }

  /**
   * Wakes the claim loops once this event-loop turn's completions are in (#finished): handlers that
   * end within a microtask (an async handler with nothing to wait for) run a whole claim in one
   * turn, and a loop woken at each of them claimed as soon as half a batch was free, mid-burst.
   * Those half claims cost the server about what full ones do (BENCHMARKS.md, "Round eighteen").
   */
  #nudgeClaimersSoon(): void {
    if (this.#nudgeQueued) return;
    this.#nudgeQueued = true;
    setImmediate(this.#queuedNudge);
  }

  readonly #queuedNudge = (): void => {
    this.#nudgeQueued = false;
    this.#nudgeClaimers();
  };

  /** Wakes the claim loops that sleep for capacity (a slot freed, a batch arrived, pipelining changed). */
  #nudgeClaimers(): void {
    const [primary, second] = this.#claimers;
    if (primary?.waiting === true) primary.wakeup.notify();
    // The second loop sleeps through completions unless pipelined: no wake-up per message for it.
    if (second?.waiting === true && this.#pipelined) second.wakeup.notify();
  }

  /**
   * One claim loop. The primary loop polls and is woken by NOTIFY; the other runs only while
   * pipelined. Both count the rows the other has asked for against capacity.
   */
  async #claimLoop(claimer: Claimer, primary: boolean): Promise<void> {
    const { fetchBatchSize } = this.options;
    const minimumFetch = Math.max(1, Math.ceil(fetchBatchSize / 2));
    let idleFetches = 0;
    // Handlers that end synchronously run a whole batch inside the pump that follows its claim, so
    // none of them finishes while the next claim is in flight (the starvation #finished counts):
    // they emptied the buffer before it was even sent, and wait for it. The same signal.
    let outran = false;
    // Asleep for room since the last claim: handlers that end within a microtask drain the whole
    // buffer in the turn before the loop wakes (#nudgeClaimersSoon), and it then finds it empty,
    // nothing on its way and slots idle: they outran it too, if that took them less than the
    // claim's round trip. Slow handlers that end together (one shared promise) also leave it so,
    // but long after the claim came back (review).
    let waitedForRoom = false;
    let lastArrivedAt = 0;
    let lastRoundTripMs = 0;
    let errors = 0;
    while (this.#running()) {
      const held = this.#buffer.length + this.#inFlight.size + this.#reserved;
      const free = this.#capacity() - held;
      const empty = this.#buffer.length === 0 && this.#reserved === 0;
      if (!(primary || this.#pipelined) || free <= 0 || (free < minimumFetch && !empty)) {
        // A freed slot, an arriving batch or stop() wakes us. An idle poll sleep is not cut short
        // by freed slots: that would turn every completion into an extra (empty) fetch.
        claimer.waiting = true;
        waitedForRoom = true;
        await claimer.wakeup.sleep();
        claimer.waiting = false;
        continue;
      }
      if (
        waitedForRoom &&
        empty &&
        this.#inFlight.size < this.options.concurrency &&
        performance.now() - lastArrivedAt <= lastRoundTripMs
      )
        outran = true;
      waitedForRoom = false;
      const limit = Math.min(fetchBatchSize, free);
      const starvationsBefore = this.#starvations;
      let claimed: Lease[];
      this.#reserved += limit;
      const claimStartedAt = performance.now();
      claimer.claimingSince = claimStartedAt;
      this.#idleProbe.claimed(claimStartedAt);
      try {
        claimed = await this.#claim(limit);
        if (this.#unsettled.watching) this.#unsettled.claimed(claimed.map(recordOf));
        errors = 0;
        this.#failingSince = undefined;
      } catch (error) {
        errors += 1;
        this.#failingSince ??= performance.now();
        await pauseAfterFailure(this.#failureReport, error, errors, 'claim failed', claimer.wakeup, () => this.#running());
        continue;
      } finally {
        this.#reserved -= limit;
        claimer.claimingSince = undefined;
      }
      if (!this.#running()) {
        // Adopted first: a row this subscription still runs (or acks), re-leased by this claim, is
        // its holder's under the new token; given back, its run's ack missed and the row ran again.
        await this.#release(this.#adoptReclaimed(claimed));
        break;
      }
      lastArrivedAt = performance.now();
      lastRoundTripMs = lastArrivedAt - claimStartedAt;
      const full = claimed.length === limit;
      // A full claim never reached its expired branch: every half lease, expired leases go back.
      if (full && primary && claimStartedAt - this.#expiredReleasedAt >= this.options.leaseTtlMs / 2) {
        await this.#releaseExpired(claimStartedAt);
      }
      claimed = this.#withoutPaused(this.#adoptReclaimed(claimed), claimStartedAt);
      this.#pipelined = full && !this.#prefetchPaused() && (this.#pipelined || outran || this.#starvations > starvationsBefore);
      const endedBefore = this.#endedSynchronously;
      this.#buffer.push(...claimed);
      this.#pump();
      outran = this.#buffer.length === 0 && this.#endedSynchronously > endedBefore;
      this.#nudgeClaimers();
      if (!primary) this.#replanPolling();
      if (claimed.length > 0 || !primary || this.#schedule?.moreToTry() === true) {
        idleFetches = 0;
        continue;
      }
      idleFetches += 1;
      this.#deps.onIdle();
      // Polling from here: a claim of the second loop that comes back during the probe wakes it
      // (#replanPolling), and the wake-up waits for its sleep (Wakeup).
      claimer.polling = true;
      await claimer.wakeup.sleep(await this.#idleProbe.sleepMs(idleFetches, claimStartedAt));
      claimer.polling = false;
    }
  }

  /**
   * The second loop's claim came back while the first slept its idle poll: what it taught the
   * schedule (a queue left to try, an earlier due time, rows it took that leave their queues
   * active) was not known when the first chose how long to sleep, so it plans again now. Without
   * this, a row that claim showed due soon could wait out the poll interval. By reading: no test
   * interleaves the two loops so (the one that failed in CI was the stale try, queue-schedule.ts).
   */
  #replanPolling(): void {
    const first = this.#claimers[0];
    if (this.#schedule !== undefined && first?.polling === true) first.wakeup.notify();
  }

  async #claim(limit: number): Promise<Lease[]> {
    const token = randomUUID();
    const { queues, leaseTtlMs } = this.options;
    const single = queues.length === 1;
    const schedule = this.#schedule;
    const plan = schedule?.plan(performance.now(), limit);
    // Every queue is idle: nothing to ask the database until a recheck or a wake.
    if (plan?.queues.length === 0) return [];
    // A plan that lists one queue of several sends claimOne with that queue's report: the same rows
    // and report as claimMany over it, at a fraction of the statement's planning and probes.
    const listedOne = plan?.queues.length === 1 ? plan.queues[0] : undefined;
    const { claimOne, claimOneReported, claimMany } = this.#deps.sql;
    const statement = single ? claimOne : listedOne !== undefined ? claimOneReported : claimMany;
    const values = [
      single ? queues[0] : (listedOne ?? plan?.queues ?? queues),
      leaseTtlMs,
      limit,
      token,
      this.#runningPastHalfLease(),
    ];
    const heldFrom = performance.now();
    if (schedule === undefined || plan === undefined) {
      // Each row becomes its lease as it arrives off the wire (StatementRunner.decoded); the lease's
      // age starts when the whole claim is back.
      const leases = await this.#deps.db.decoded(statement, values, (row): Lease => ({
        record: decodeClaimedRow(row),
        token,
        leasedAt: 0,
        heldFrom,
      }));
      const leasedAt = performance.now();
      for (const lease of leases) lease.leasedAt = leasedAt;
      emitFetched(this.#deps.emit, this.options.name, queues, leases, queueOfLease);
      return leases;
    }
    // A scheduled claim's rows include its per-queue reports: the schedule takes those first.
    const rows = await this.#deps.db.decoded(statement, values, (row) => row);
    const leasedAt = performance.now();
    const leases = schedule
      .learn(plan, rows, leasedAt)
      .map((row): Lease => ({ record: decodeClaimedRow(row), token, leasedAt, heldFrom }));
    emitFetched(this.#deps.emit, this.options.name, plan.queues, leases, queueOfLease);
    return leases;
  }

  /**
   * Gives back the subscription's queues' expired leases (sql.ts releaseExpired): under a backlog
   * the claim's expired branch never runs. A failure is logged; the next full claim tries again.
   */
  async #releaseExpired(now: number): Promise<void> {
    this.#expiredReleasedAt = now;
    const { queues, leaseTtlMs, name } = this.options;
    try {
      const { rows } = await this.#deps.db.run<{ id: string }>(this.#deps.sql.releaseExpired, [
        queues,
        leaseTtlMs,
        this.#heldHere(),
        RELEASE_EXPIRED_LIMIT,
      ]);
      if (rows.length === 0) return;
      // More may be left: the next full claim gives back the next ones.
      if (rows.length === RELEASE_EXPIRED_LIMIT) this.#expiredReleasedAt = Number.NEGATIVE_INFINITY;
      this.#deps.logger.warn(
        { subscriber: name, rows: rows.length, leaseTtlMs },
        'gave back rows whose lease ran out (a process that died, or a handler past its lease): they run next, ahead of the backlog',
      );
    } catch (error) {
      this.#deps.logger.error({ subscriber: name, err: errorMessage(error) }, 'could not give back expired leases; will retry');
    }
  }

  /**
   * Every row this subscription still holds, as releaseExpired's $3: buffered, running or writing
   * its outcome, or waiting in the acker. None is expired for this process, however old its lease
   * in the database: released, a queued ack's DELETE would miss (the token gone), the row would be
   * claimed as new and run again (subscriber-sync-handlers.test.ts: a slow synchronous batch's ack
   * still queued). A claim's expired branch keeps such a row through #adoptReclaimed; a release cannot.
   */
  #heldHere(): string {
    const ids = [
      ...this.#buffer.map((lease) => lease.record.id),
      ...this.#inFlight.all().map(({ lease }) => lease.record.id),
      ...this.#writer.queuedAcks().map((lease) => lease.record.id),
    ];
    return ids.length === 0 ? NONE_RUNNING : `{${ids.join(',')}}`;
  }

  /**
   * The ids ($5) the claim must not re-claim through its expired branch: rows running here whose
   * lease may have expired in the database's eyes (half a lease by our clock leaves a claim's round
   * trip of margin). Usually none: the constant avoids building a string per claim.
   */
  #runningPastHalfLease(): string {
    if (this.#inFlight.size === 0) return NONE_RUNNING;
    const now = performance.now();
    let ids: string | undefined;
    for (const { lease } of this.#inFlight.all()) {
      if (!this.#isStale(lease, now)) continue;
      ids = ids === undefined ? lease.record.id : `${ids},${lease.record.id}`;
    }
    return ids === undefined ? NONE_RUNNING : `{${ids}}`;
  }

  /**
   * Starts buffered rows while slots are free; releases the stale ones it meets (see the class
   * comment). Not re-entered: a delivery that ends synchronously (#run) frees its slot inside this
   * loop, which then takes the next row itself, instead of a nested pump per row.
   */
  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    let stale: Lease[] | undefined;
    try {
      while (this.#inFlight.size < this.options.concurrency && this.#running()) {
        const lease = this.#buffer.shift();
        if (lease === undefined) break;
        // The clock is read per row: synchronous deliveries run inside this loop, so a batch of
        // slow ones moves time on between two rows.
        const now = performance.now();
        if (this.#isStale(lease, now)) (stale ??= []).push(lease);
        else this.#run(lease, now);
      }
    } finally {
      this.#pumping = false;
    }
    if (stale !== undefined) this.#releaseUnstarted(stale);
  }

  /** The buffer's head is its oldest claim: releases every buffered row that waited half a lease. */
  #releaseStale(): void {
    const now = performance.now();
    const fresh = this.#buffer.findIndex((lease) => !this.#isStale(lease, now));
    const count = fresh === -1 ? this.#buffer.length : fresh;
    if (count > 0 && this.#running()) this.#releaseUnstarted(this.#buffer.splice(0, count));
  }

  /**
   * The shortest bound of a run, if it has one: handlerTimeoutMs, and without renewal the lease (a
   * transactional run's through its lock's expiry, #lockExpiry; the sweep then only frees it if it
   * is stuck).
   */
  #runBoundMs(): number | undefined {
    const { handlerTimeoutMs, leaseTtlMs, leaseRenewIntervalMs } = this.options;
    if (leaseRenewIntervalMs !== undefined) return handlerTimeoutMs;
    return Math.min(leaseTtlMs, handlerTimeoutMs ?? leaseTtlMs);
  }

  /**
   * Times out the runs past their bound: handlerTimeoutMs from their start, and, without renewal,
   * their lease. The lease bounds a run across processes, where another one takes an expired row;
   * here nothing would, since the claim leaves out the rows running here ($5), so a handler that
   * never settled kept its row, its slot and its ordering key for good. A timed-out run's signal is
   * aborted and an async handler fails with HandlerTimeoutError under the ack policy (deliver.ts).
   * A run that still has not ended stallAfterMs later (its outcome write would have ended or failed
   * by then) is stuck outside the handler (a consume middleware that does not return): its slot is
   * freed, and the row, no longer held here, comes back through lease expiry like a crashed
   * process's.
   */
  #boundRuns(): void {
    if (this.#inFlight.size === 0) return;
    const { handlerTimeoutMs, leaseTtlMs, leaseRenewIntervalMs, transactional, name } = this.options;
    const leaseBound = leaseRenewIntervalMs === undefined && !transactional;
    const now = performance.now();
    let stuck: RunningDelivery[] | undefined;
    // A timed-out run still here may be writing its outcome (a statement, bounded by about two
    // queryTimeoutMs with its checkout): stuck only once that is past too.
    const stuckAfterMs = Math.max(this.#deps.stallAfterMs, (this.#runBoundMs() ?? 0) / 4);
    for (const run of this.#inFlight.all()) {
      if (run.timedOutAt !== undefined) {
        if (now - run.timedOutAt >= stuckAfterMs) (stuck ??= []).push(run);
        continue;
      }
      const error =
        handlerTimeoutMs !== undefined && now - run.startedAt >= handlerTimeoutMs
          ? new HandlerTimeoutError(handlerTimeoutMs, 'handlerTimeoutMs')
          : leaseBound && now - run.lease.leasedAt >= leaseTtlMs
            ? new HandlerTimeoutError(leaseTtlMs, 'lease')
            : undefined;
      if (error === undefined) continue;
      run.timedOutAt = now;
      // The handler ended: its outcome is on its way (a transactional COMMIT, a write), or a
      // middleware holds the run after next(). Not aborted (an abort would destroy a COMMIT under
      // way and fail a handler that succeeded); freed below if it is stuck.
      if (run.handlerEnded) continue;
      this.#deps.logger.warn(
        { subscriber: name, messageId: run.lease.record.id, timeoutMs: error.timeoutMs, bound: error.bound },
        `handler ran past its ${error.bound} without settling: failing it with HandlerTimeoutError under the ack policy; whatever it does later is ignored`,
      );
      // Its end comes after this loop (a microtask later), whose array it would change.
      run.timeOut(error);
    }
    for (const run of stuck ?? []) {
      this.#deps.logger.error(
        { subscriber: name, messageId: run.lease.record.id },
        'delivery did not end long after its timeout (a consume middleware that does not return): freeing its slot; the row comes back when its lease expires (an outcome written later is fenced by the lease)',
      );
      // A transactional run may still hold its row's lock (a failed run held for its retry write):
      // aborted, its transaction closes. Freed alone it kept the lock and its connection for good
      // under renewal, where no lock expiry (#lockExpiry) is armed to close it.
      if (this.#locked.has(run.lease)) {
        run.abort(new LeaseLostError(run.lease.record.id, 'its delivery was freed as stuck with its row locked'));
      }
      this.#finished(run);
    }
  }

  /** Gives stale buffered rows back (uncounted) and pauses the buffer, with a warning the first time. */
  #releaseUnstarted(leases: Lease[]): void {
    if (!this.#prefetchPaused()) {
      this.#deps.logger.warn(
        {
          subscriber: this.options.name,
          rows: leases.length,
          leaseTtlMs: this.options.leaseTtlMs,
          concurrency: this.options.concurrency,
          fetchBatchSize: this.options.fetchBatchSize,
        },
        'rows waited in the local buffer for half their lease before a slot was free; releasing them unstarted and claiming only for free slots for a while (raise leaseTtlMs or concurrency, or lower fetchBatchSize)',
      );
    }
    this.#prefetchPausedUntil = performance.now() + PREFETCH_PAUSE_LEASES * this.options.leaseTtlMs;
    this.#pipelined = false;
    this.#giveBack(leases);
  }

  /**
   * The rows of a claim minus those of queues paused while it was in flight (their signal came
   * after it started), which go back unstarted like the buffered ones: otherwise up to a batch of
   * a paused queue would run after the pause, one after another.
   */
  /**
   * Rows this subscription already holds (running, buffered, or acked with the DELETE not yet sent),
   * claimed again through the expired branch: the exclusion ($5) missed them because the claim's
   * round trip outlasted half their lease, or the handler ended after it and its ack waits for the
   * acker's turn. The holder takes the new lease instead of a second run starting here: its outcome write
   * is fenced by the newest token, now its own. The re-claim counted a delivery that did not run.
   * Only a row delivered before can be one (deliveries_count > 1), which keeps the check off the
   * fast path; a claim of the holder's own retry is not one (see below).
   */
  #adoptReclaimed(claimed: Lease[]): Lease[] {
    if (!claimed.some((lease) => lease.record.deliveries_count > 1)) return claimed;
    const held = new Map<string, Lease>();
    for (const lease of this.#buffer) held.set(lease.record.id, lease);
    for (const { lease } of this.#inFlight.all()) held.set(lease.record.id, lease);
    for (const lease of this.#writer.queuedAcks()) held.set(lease.record.id, lease);
    return claimed.filter((lease) => {
      const holder = held.get(lease.record.id);
      // A retry written by the holder (its handler failed) also makes the row claimable while the
      // holder is still in #inFlight: that claim is the row's next attempt, not a lost lease. The
      // retry counted an attempt; a lease that ran out did not.
      if (holder === undefined || holder.record.attempts_count !== lease.record.attempts_count) return true;
      holder.token = lease.token;
      holder.leasedAt = lease.leasedAt;
      holder.heldFrom = lease.heldFrom;
      this.#deps.logger.warn(
        { subscriber: this.options.name, messageId: lease.record.id },
        'a claim re-leased a row this subscription holds (its lease ran out here); the holder keeps it under the new lease',
      );
      return false;
    });
  }

  #withoutPaused(claimed: Lease[], claimStartedAt: number): Lease[] {
    if (this.#pauseSignals.size === 0 || claimed.length === 0) return claimed;
    const pausedSince = (lease: Lease): boolean => (this.#pauseSignals.get(lease.record.queue) ?? -Infinity) >= claimStartedAt;
    const late = claimed.filter(pausedSince);
    if (late.length === 0) return claimed;
    this.#deps.logger.info(
      { subscriber: this.options.name, rows: late.length },
      'queue paused while a claim was in flight: releasing its rows',
    );
    this.#giveBack(late);
    return claimed.filter((lease) => !pausedSince(lease));
  }

  /** Releases `leases` in the background; stop() waits for it. Frees their capacity at once. */
  #giveBack(leases: Lease[]): void {
    const releasing = this.#release(leases).finally(() => {
      this.#releasing.delete(releasing);
      // Once the release committed: a claim woken before it could find the rows still leased and
      // report their queue idle.
      for (const lease of leases) this.#rowReturned(lease);
    });
    this.#releasing.add(releasing);
    this.#nudgeClaimers();
  }

  /**
   * `queue` was paused (outbox.pause(), in any process: a NOTIFY). Claims already leave it out;
   * its rows buffered here but not started go back now, unstarted and uncounted, rather than run
   * one after another for as long as the buffer lasts. Running handlers finish. A claim that was in
   * flight when the signal came brings rows claimed before the pause committed: they go back too
   * (#withoutPaused).
   */
  releasePaused(queue: string): void {
    if (!this.#running()) return;
    this.#deps.logger.debug({ subscriber: this.options.name, queue }, 'queue paused');
    this.#pauseSignals.set(queue, performance.now());
    const paused = this.#buffer.filter((lease) => lease.record.queue === queue);
    if (paused.length === 0) return;
    this.#buffer.splice(0, this.#buffer.length, ...this.#buffer.filter((lease) => lease.record.queue !== queue));
    this.#deps.logger.info(
      { subscriber: this.options.name, queue, rows: paused.length },
      'queue paused: releasing its buffered rows',
    );
    this.#giveBack(paused);
  }

  /**
   * One slot's delivery, then the slot is free again: at once when deliver() ended it
   * synchronously (a synchronous handler's ack), or when #deliveryEnds hears its end.
   */
  #run(lease: Lease, now: number): void {
    const run = this.#inFlight.start(lease, now);
    let endedNow: boolean;
    try {
      endedNow = deliver(lease, run, this.#isAbandoned, this.#deliverDeps, this.#deliveryEnds);
    } catch (error) {
      this.#deliveryFailed(error);
      endedNow = true;
    }
    if (!endedNow) return;
    this.#endedSynchronously += 1;
    this.#finished(run);
  }

  /** Where a delivery that did not end synchronously reports its end. */
  readonly #deliveryEnds: DeliveryEnds<RunningDelivery> = {
    ended: (_lease, run) => {
      this.#finished(run);
    },
    failed: (_lease, run, error) => {
      // The slot is freed even when logging the failure throws.
      try {
        this.#deliveryFailed(error);
      } finally {
        this.#finished(run);
      }
    },
  };

  #deliveryFailed(error: unknown): void {
    this.#deps.logger.error({ subscriber: this.options.name, err: errorMessage(error) }, 'delivery failed unexpectedly');
  }

  /**
   * A row held here ended or went back: its outcome may have made it ready again (a retry), so an
   * idle queue of it is listed again, by a claim woken now (queue-schedule.ts).
   */
  #rowReturned(lease: Lease): void {
    if (this.#schedule?.rowReturned(lease.record.queue) === true) this.#claimers[0]?.wakeup.notify();
  }

  /** A delivery ended: its slot takes the next buffered row (#pump), and the claim loops hear of the free capacity. */
  #finished(run: RunningDelivery): void {
    // Already ended: a stuck run freed by #boundRuns whose delivery settled after all.
    if (run.index < 0) return;
    this.#inFlight.end(run);
    this.#rowReturned(run.lease);
    if (this.#inFlight.size === 0) for (const resolve of this.#idleWaiters.splice(0)) resolve();
    this.#pump();
    // This slot found nothing to take while a claim is on its way: the handlers outran it.
    if (this.#buffer.length === 0 && this.#reserved > 0) this.#starvations += 1;
    this.#nudgeClaimersSoon();
  }

  readonly #isAbandoned = (): boolean => this.#abandoned;

  /**
   * Extends the leases of every row this subscription holds (buffered, running and acked with the
   * DELETE not yet landed, except those a transactional delivery has locked: the lock holds them),
   * fenced by token. A row the database did not return has lost its lease: a running handler's
   * signal is aborted, a buffered row is dropped (another delivery owns it). While stopping, only
   * running rows and acks: the buffered ones are being released.
   */
  async #renewLeases(): Promise<void> {
    const buffered = this.#running() ? this.#buffer : [];
    // With the rows whose ack DELETE is queued or on its way: a DELETE the acker retries can take
    // up to ACK_ATTEMPTS × queryTimeoutMs, and a lease that ran out meanwhile let another process
    // claim a handled row and run it again (found in review). One whose DELETE landed matches nothing.
    const held = [
      ...new Set([...buffered, ...this.#inFlight.all().map((run) => run.lease), ...this.#writer.queuedAcks()]),
    ].filter((lease) => !this.#locked.has(lease));
    if (held.length === 0) return;
    try {
      const values = pairValues(held);
      const sentTokens = held.map((lease) => lease.token);
      const sentFrom = performance.now();
      const result = await this.#deps.db.run<MatchedPair>(this.#deps.sql.renewLeases, values);
      const renewed = new Set(result.rows.map((row) => pairKey(row.id, row.token)));
      const now = performance.now();
      for (const [index, lease] of held.entries()) {
        // Adopted under a new token since this renewal was sent (#adoptReclaimed): the claim that
        // gave it just leased it, and what this renewal saw of the old token says nothing.
        if (lease.token !== sentTokens[index]) continue;
        if (renewed.has(pairKey(lease.record.id, lease.token))) {
          lease.leasedAt = now;
          lease.heldFrom = sentFrom;
          continue;
        }
        // Locked since this renewal was sent: its lock holds it, whatever the renewal saw.
        if (this.#locked.has(lease)) continue;
        // Let go since it was sent (released by stop() or as stale, acked, ended): not lost.
        const run = this.#inFlight.find(lease);
        const buffered = this.#buffer.indexOf(lease);
        if (run === undefined && buffered < 0) continue;
        // Its handler ended and its outcome is being written (a retry or DLQ move that cleared the
        // token is one): nothing to abort, and the fenced write says itself whether the lease held.
        // Before (found in review), the run's own retry read as a lost lease: a warning, and the
        // signal of a handler that had finished aborted.
        if (run?.handlerEnded === true) continue;
        this.#deps.logger.warn(
          { subscriber: this.options.name, messageId: lease.record.id },
          'lease renewal found the lease lost; aborting the handler',
        );
        run?.abort(new Error('lease lost'));
        if (buffered >= 0) this.#buffer.splice(buffered, 1);
      }
    } catch (error) {
      this.#deps.logger.error(
        { subscriber: this.options.name, err: errorMessage(error) },
        'lease renewal failed; will retry at the next interval',
      );
    }
  }

  /**
   * A locked row's lease is the lock, which no claim can take however old the lease gets. Without
   * renewal, the lease's time still bounds the run, as it does for a plain subscription (whose
   * expired row another delivery takes): when it runs out, the delivery is aborted, which closes
   * its transaction (delivery-transaction.ts), and the row is free for the next claim. With
   * renewal, a live process keeps its rows, locked or not.
   */
  #lockExpiry(lease: Lease): NodeJS.Timeout | undefined {
    const { leaseRenewIntervalMs, leaseTtlMs, name } = this.options;
    if (leaseRenewIntervalMs !== undefined) return undefined;
    const timer = setTimeout(
      () => {
        this.#deps.logger.warn(
          { subscriber: name, messageId: lease.record.id, leaseTtlMs },
          'transactional delivery outlived its lease with its row locked (the handler, or its ack: the lease must cover both); closing its transaction so another delivery can take the row (set leaseRenewIntervalMs for deliveries that may run longer)',
        );
        // A LeaseLostError as the reason: the run then ends as lease_lost, with no outcome write
        // (delivery-transaction.ts), as a plain subscription's expired lease does. timeOut, not a
        // bare abort: a handler that never settles is failed now (its transaction is gone), and a
        // run still here later is freed as stuck (#boundRuns); else it held its row for good.
        const run = this.#inFlight.find(lease);
        if (run === undefined) return;
        run.timedOutAt ??= performance.now();
        run.timeOut(
          new LeaseLostError(lease.record.id, `its lease ran out (leaseTtlMs ${leaseTtlMs}) while the transactional handler ran`),
        );
      },
      Math.max(0, lease.leasedAt + leaseTtlMs - performance.now()),
    );
    timer.unref();
    return timer;
  }

  /** Gives back leases of rows that never started, so they are redelivered at once. */
  async #release(leases: readonly Lease[]): Promise<void> {
    if (leases.length === 0) return;
    try {
      const values = pairValues(leases);
      await this.#deps.db.run(this.#deps.sql.releaseLeases, values);
    } catch (error) {
      this.#deps.logger.warn(
        { subscriber: this.options.name, rows: leases.length, err: errorMessage(error) },
        'could not release unstarted rows; they will be redelivered after their leases expire',
      );
    }
  }

  /**
   * Graceful stop: claim nothing more, release rows never started, wait up to `gracefulTimeoutMs`
   * for running handlers and their outcome writes (including the coalesced deletes), then abort
   * the rest: their rows keep their leases and are redelivered after expiry. Lease renewal keeps
   * running during the drain (a handler slower than leaseTtlMs would otherwise lose its row to
   * another instance mid-drain) and stops with it.
   */
  async stop(gracefulTimeoutMs: number): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'stopping') return;
    this.#state = 'stopping';
    for (const claimer of this.#claimers) claimer.wakeup.notify();
    // One budget for everything: the claim in flight (its rows are released), the rows buffered but
    // never started (released), the running handlers and their outcome writes.
    const drained = (async () => {
      // Rows buffered but never started go back now, not after the claim in flight: it may take up
      // to queryTimeoutMs, past the drain's budget, and they kept their leases and counted
      // deliveries until expiry. (The claim's own rows, and what else reaches the buffer, after it.)
      const early = this.#release(this.#buffer.splice(0));
      await this.#loop;
      clearInterval(this.#staleTimer);
      await early;
      await this.#release(this.#buffer.splice(0));
      await Promise.all(this.#releasing);
      if (this.#inFlight.size > 0) await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
      await this.#writer.drainAcks();
    })();
    const deadline = performance.now() + gracefulTimeoutMs;
    const timedOut = await beforeDeadline(
      drained.then(() => false),
      gracefulTimeoutMs,
      () => true,
    );
    clearInterval(this.#renewTimer);
    clearInterval(this.#staleTimer);
    clearInterval(this.#boundTimer);
    this.#retryAlarm?.clear();
    this.#idleProbe.stop();
    // A renewal already sent is left to finish within what is left of the budget, so it does not
    // race the pool's end. After a timeout nothing more is awaited.
    if (!timedOut && this.#renewing !== undefined) {
      await beforeDeadline(this.#renewing, Math.max(0, deadline - performance.now()), () => undefined);
    }
    if (timedOut) {
      this.#abandoned = true;
      const inFlight = this.#inFlight.size;
      // A copy: an abort listener may end its delivery. Timed out, not only aborted: a handler that
      // ignores its signal and never settles is failed now (abandoned: nothing of it is written), so
      // its delivery ends for its observers too. Only aborted, its in-process gauge stayed up and its
      // span open on a registry that outlives the Outbox (found in review).
      for (const run of [...this.#inFlight.all()]) run.timeOut(new Error('shutdown: graceful timeout reached'));
      this.#deps.logger.warn(
        { subscriber: this.options.name, inFlight, gracefulTimeoutMs },
        'drain timed out; rows still in flight keep their leases and will be redelivered after they expire',
      );
      this.#deps.emit?.({
        type: 'drain_timeout',
        subscriber: this.options.name,
        queues: this.options.queues,
        inFlight,
        timeoutSeconds: gracefulTimeoutMs / 1000,
      });
    }
    this.#state = 'stopped';
  }
}
