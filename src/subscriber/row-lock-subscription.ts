import { performance } from 'node:perf_hooks';

import { errorMessage } from '../errors.js';
import type { SchemaNames } from '../schema/schema-names.js';
import { beforeDeadline, CLOSE_TIMEOUT_MS } from '../util/deadline.js';
import { Wakeup } from '../util/wakeup.js';
import { type ClaimFailureReport, notStalled, pauseAfterFailure } from './claim-pacing.js';
import { DueAlarm } from './due-alarm.js';
import { HandlerSlots } from './handler-slots.js';
import { IdleProbe } from './idle-probe.js';
import type { Handler } from './message.js';
import { type QueueSchedule, scheduleFor } from './queue-schedule.js';
import { type HandOver, type IdRange, releaseHandedOver, RowLockBatch, type RowLockBatchDeps } from './row-lock-batch.js';
import { buildRowLockSql, rowLockBegin, rowLockSettings } from './row-lock-sql.js';
import type { SubscriptionDeps } from './subscription.js';
import { type ResolvedSubscribeOptions, rowLockLoops } from './subscription-options.js';
import { Hurry } from './transaction-outcome.js';
import { UnsettledWrites } from './unsettled-writes.js';

/**
 * A second (third…) batch is opened while one runs only when a batch's handlers take less than this
 * share of leaseTtlMs: its rows then wait at most about one batch's handler time for slots, far from
 * the deadline that bounds it (counted from its claim).
 */
const PIPELINE_BUDGET_SHARE = 1 / 4;

/**
 * After stop()'s budget ran out and the running handlers were abandoned, how long it still waits
 * for the batches to commit what finished: half the close budget. The Outbox's stop() then closes
 * within CLOSE_TIMEOUT_MS, so it ends within gracefulTimeoutMs + 1.5 s even when a batch's COMMIT
 * hangs on a frozen connection (that transaction never commits, unless the link recovers with the
 * COMMIT still in it: its rows stay in the table and are delivered again).
 */
const ABANDONED_COMMIT_WAIT_MS = CLOSE_TIMEOUT_MS / 2;

/** One claim loop: its wake-up, whether it is parked (sleeping until another loop needs help), its claim in flight. */
interface Loop {
  readonly wakeup: Wakeup;
  parked: boolean;
  /** Asleep on its idle poll (the first loop), for as long as the schedule said then. */
  polling: boolean;
  claimingSince: number | undefined;
}

/**
 * A `lease: 'row-lock'` subscription (architecture/row-lock-mode.md): `rowLockLoops(options)` loops
 * (ceil(concurrency / fetchBatchSize) + 1), each running one batch at a time in a transaction of its
 * own (row-lock-batch.ts); the batches' handlers share `concurrency` slots. So `concurrency`
 * handlers run at once, and while one batch's handlers run, the next batch is claimed (or the
 * last one committed) by another loop: the database's round trips overlap the handlers' work.
 *
 * Loop states:
 *   running  claims a batch; a non-empty one is followed by another at once. The first loop polls
 *            when idle (jittered backoff from minPollIntervalMs to maxPollIntervalMs, woken early
 *            by NOTIFY or a freed key); the others are parked until a loop's claim comes back full
 *            (a backlog) with handlers fast enough to pipeline (PIPELINE_BUDGET_SHARE), which wakes
 *            one of them, and park again at their first claim that is not full or whose handlers
 *            were slow (waking the first when their batch left rows unstarted). An idle
 *            subscription costs one claim per poll.
 *            A failed batch backs off exponentially (capped at 30 s).
 *   stopping claims nothing more; a running batch starts no more rows and commits what finished.
 *   stopped  the loops have exited.
 */
export class RowLockSubscription {
  readonly options: ResolvedSubscribeOptions;
  readonly #deps: SubscriptionDeps;
  readonly #batchDeps: RowLockBatchDeps;
  readonly #loops: Loop[];
  readonly #batches = new Set<RowLockBatch>();
  #state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  /** Its batches' questions about a COMMIT whose answer was lost, still asking (RowLockQuestions). */
  readonly #questions = new Set<Promise<void>>();
  readonly #hurry = new Hurry();
  #questionsGivenUp = false;
  #loop: Promise<void> | undefined;
  #loopFailed = false;
  #failingSince: number | undefined;
  /**
   * Which queues a claim lists (queue-schedule.ts), for a subscription over several: the queues with
   * rows due and those it knows nothing of, not every queue (issue 18). One for all the loops: a
   * report of any loop's claim tells every loop.
   */
  readonly #schedule: QueueSchedule | undefined;
  /** Wakes the first loop when a retry a batch committed is due (due-alarm.ts); one queue only (the schedule does it for several). */
  readonly #retryAlarm: DueAlarm | undefined;
  /** Before an idle loop's long sleep: when a row turns claimable that nobody will announce (idle-probe.ts). */
  readonly #idleProbe: IdleProbe;

  constructor(options: ResolvedSubscribeOptions, handler: Handler, deps: SubscriptionDeps, names: SchemaNames) {
    this.options = options;
    this.#deps = deps;
    const sql = buildRowLockSql(names);
    this.#schedule = scheduleFor(options);
    this.#retryAlarm = this.#schedule === undefined ? new DueAlarm(() => this.#loops[0]?.wakeup.notify()) : undefined;
    this.#idleProbe = new IdleProbe({
      db: deps.db,
      statement: deps.sql.nextClaimable,
      options,
      schedule: this.#schedule,
      held: () => '{}',
      wake: (queue) => {
        this.wake(queue);
      },
      logger: deps.logger,
    });
    this.#loops = Array.from({ length: rowLockLoops(options) }, () => ({
      wakeup: new Wakeup(),
      parked: false,
      polling: false,
      claimingSince: undefined,
    }));
    this.#batchDeps = {
      db: deps.db,
      sql,
      begin: rowLockBegin(options.leaseTtlMs),
      settings: rowLockSettings(options.leaseTtlMs),
      planNext: () => {
        if (this.#schedule === undefined) return { plan: undefined };
        const plan = this.#schedule.plan(performance.now(), options.fetchBatchSize);
        return plan.queues.length === 0 ? undefined : { plan };
      },
      outcomeSql: { ...deps.sql, retry: sql.retry, terminalDelete: sql.terminalDelete, dlqMove: sql.dlqMove },
      dlqTable: deps.dlqTable,
      logger: deps.logger,
      emit: deps.emit,
      renderError: deps.renderError,
      tally: deps.tally,
      // The key's next row is in its queue's report as due now (reports leave keyTurn out): the
      // queue is active or unknown already, and only the loop needs waking.
      keyFreed: () => {
        this.#loops[0]?.wakeup.notify();
      },
      retried: (dueAts) => {
        for (const dueAt of dueAts) this.#retryAlarm?.add(dueAt);
      },
      handler,
      deliverDeps: {
        options,
        logger: deps.logger,
        emit: deps.emit,
        middlewares: deps.middlewares,
        customStats: deps.customStats,
        followUp: deps.followUp,
      },
      stopping: () => this.#state !== 'running',
      slots: new HandlerSlots(options.concurrency),
      otherBatch: (self) => {
        // The most recent other batch with a range (a Set iterates in insertion order).
        let range: IdRange | undefined;
        for (const batch of this.#batches) if (batch !== self && batch.range !== undefined) range = batch.range;
        return range;
      },
      claimsAgain: (claimed, handlersMs) => this.#claimsAgain(claimed, handlersMs),
      schedule: this.#schedule,
      unsettled: new UnsettledWrites(),
      questions: {
        asking: (question) => {
          this.#questions.add(question);
          void question.finally(() => this.#questions.delete(question));
        },
        hurry: this.#hurry,
        givenUp: () => this.#questionsGivenUp,
      },
    };
  }

  /** As Subscription.alive: false when a loop died, claims kept failing, or a claim is stuck. */
  get alive(): boolean {
    if (this.#state !== 'running' || this.#loopFailed) return false;
    return notStalled(this.#deps.stallAfterMs, this.#failingSince, this.#loops);
  }

  /**
   * NOTIFY (or a local publish) for one of this subscription's queues: the first loop claims; a full
   * claim brings the others. `queue` undefined: any of them (a LISTEN (re)connect: notifications
   * may have been missed, so the schedule lists every queue again).
   */
  wake(queue?: string): void {
    this.#schedule?.wake(queue);
    this.#loops[0]?.wakeup.notify();
  }

  /**
   * `queue` was paused: the next claims leave it out. A running batch's rows of it finish (a batch
   * is bounded by fetchBatchSize and leaseTtlMs); there is no buffer to give back.
   */
  releasePaused(queue: string): void {
    this.#deps.logger.debug({ subscriber: this.options.name, queue }, 'queue paused');
  }

  start(): void {
    if (this.#state !== 'new') return;
    this.#state = 'running';
    this.#loop = Promise.all(
      this.#loops.map((loop, index) =>
        this.#run(loop, index === 0).catch((error: unknown) => {
          this.#loopFailed = true;
          this.#deps.logger.error({ subscriber: this.options.name, err: errorMessage(error) }, 'row-lock loop crashed');
        }),
      ),
    ).then(() => undefined);
  }

  get #failureReport(): ClaimFailureReport {
    return { logger: this.#deps.logger, onClaimError: this.#deps.onClaimError, subscriber: this.options.name };
  }

  /** A method, not a field read, so TypeScript does not narrow the state across awaits. */
  #running(): boolean {
    return this.#state === 'running';
  }

  /** A backlog, handlers fast enough to pipeline, still running: the loop claims again at once. */
  #claimsAgain(claimed: number, handlersMs: number): boolean {
    return (
      this.#running() && claimed === this.options.fetchBatchSize && handlersMs < this.options.leaseTtlMs * PIPELINE_BUDGET_SHARE
    );
  }

  async #run(loop: Loop, primary: boolean): Promise<void> {
    // The connection a batch handed over, in the next batch's transaction (its COMMIT carried the
    // BEGIN, and pipelined the next claim too).
    let begun: HandOver | undefined;
    try {
      await this.#claimLoop(loop, primary, (next) => {
        const taken = begun;
        begun = next;
        return taken;
      });
    } finally {
      if (begun !== undefined) await releaseHandedOver(begun.client, this.#deps.db);
    }
  }

  /** `swap(next)`: keeps `next` (what a batch handed over) for the next batch and returns the one kept before. */
  async #claimLoop(loop: Loop, primary: boolean, swap: (next: HandOver | undefined) => HandOver | undefined): Promise<void> {
    const { fetchBatchSize } = this.options;
    loop.parked = !primary;
    let idleFetches = 0;
    let errors = 0;
    while (this.#running()) {
      if (loop.parked) {
        await loop.wakeup.sleep();
        loop.parked = false;
        continue;
      }
      // Not later than this batch's claim; the one the last batch's COMMIT message carried went a
      // little earlier (the idle probe allows for that: CLAIM_SKEW_MS).
      const claimStartedAt = performance.now();
      const held = swap(undefined);
      // Rows the last batch's COMMIT message claimed come with the plan that claim listed.
      const plan = held?.claimed === undefined ? this.#schedule?.plan(performance.now(), fetchBatchSize) : held.claimed.plan;
      let claimed: number;
      let fast = true;
      if (held?.claimed === undefined && plan?.queues.length === 0) {
        // Every queue is idle: nothing to ask the database until a recheck or a wake. A connection
        // the last batch handed over (in a new transaction) goes back rather than wait idle in it.
        if (held !== undefined) await releaseHandedOver(held.client, this.#deps.db);
        claimed = 0;
      } else {
        const batch = new RowLockBatch(this.#batchDeps);
        this.#batches.add(batch);
        loop.claimingSince = performance.now();
        // A claim the last batch's COMMIT carried went earlier, at a time not kept.
        if (held?.claimed === undefined) this.#idleProbe.claimed(loop.claimingSince);
        try {
          claimed = await batch.run(
            fetchBatchSize,
            () => {
              loop.claimingSince = undefined;
              if (!primary) this.#replanPolling();
            },
            held,
            plan,
          );
          errors = 0;
          this.#failingSince = undefined;
        } catch (error) {
          // Stopping: a batch whose connection the Outbox closed under it (stop() stopped waiting);
          // the batch said what became of its rows, and there is nothing to retry.
          if (!this.#running()) continue;
          // A batch that committed and handed over a claim, and then failed (a throwing report): its
          // successor's rows must not stay locked through the pause (they could outlast the idle
          // bound and be run here after another loop claimed them): they go back now.
          const handedOver = batch.handedOver;
          batch.handedOver = undefined;
          if (handedOver !== undefined) await releaseHandedOver(handedOver.client, this.#deps.db);
          errors += 1;
          this.#failingSince ??= performance.now();
          await pauseAfterFailure(this.#failureReport, error, errors, 'row-lock batch failed', loop.wakeup, () =>
            this.#running(),
          );
          continue;
        } finally {
          // What the batch handed over (a connection in the next batch's transaction) is the loop's
          // to release: kept for the next batch, or, when run() threw after handing it over while
          // stopping, released by #run's finally (while running the catch above released it).
          swap(batch.handedOver);
          this.#batches.delete(batch);
          loop.claimingSince = undefined;
          this.#rowsReturned(batch);
        }
        fast = batch.handlersMs < this.options.leaseTtlMs * PIPELINE_BUDGET_SHARE;
        // Rows this batch did not start (its start budget spent) are unlocked now, unchanged. This
        // loop parks after such a slow batch, and the first one may be sleeping its poll interval
        // (its claim came back empty while they were locked): it claims them now, not at its next
        // poll (seconds later: row-lock-mode.test.ts, "claimed again at once").
        if (!primary && batch.unstarted > 0) this.#loops[0]?.wakeup.notify();
      }
      // The same test as #claimsAgain, which decided whether the batch handed its connection over.
      if (claimed === fetchBatchSize && fast) {
        // A backlog: bring one parked loop in (each full claim brings the next).
        this.#loops.find((other) => other.parked)?.wakeup.notify();
        idleFetches = 0;
        continue;
      }
      if (!primary && (claimed < fetchBatchSize || !fast)) {
        loop.parked = true;
        continue;
      }
      if (claimed > 0 || this.#schedule?.moreToTry() === true) {
        idleFetches = 0;
        continue;
      }
      idleFetches += 1;
      this.#deps.onIdle();
      // Polling from here: a claim of the second loop that comes back during the probe wakes it
      // (#replanPolling), and the wake-up waits for its sleep (Wakeup).
      loop.polling = true;
      await loop.wakeup.sleep(await this.#idleProbe.sleepMs(idleFetches, claimStartedAt));
      loop.polling = false;
    }
  }

  /**
   * Another loop's claim came back (the schedule learned its reports) while the first slept its idle
   * poll: what it taught the schedule (a queue left to try, an earlier due time) was not known when
   * the first chose how long to sleep, so it plans again now (as subscription.ts #replanPolling).
   */
  #replanPolling(): void {
    const first = this.#loops[0];
    if (this.#schedule !== undefined && first?.polling === true) first.wakeup.notify();
  }

  /**
   * The batch ended (committed or rolled back): each of its rows was deleted, rescheduled (a retry),
   * moved, or left as it was (not started before the deadline or stop, abandoned, rolled back). The
   * claim's report left them out, so an idle queue of one of them is listed again, by a claim woken
   * now (queue-schedule.ts rowReturned), as a lease-mode subscription does when a delivery ends.
   */
  #rowsReturned(batch: RowLockBatch): void {
    const schedule = this.#schedule;
    if (schedule === undefined) return;
    let woken = false;
    for (const queue of batch.claimedQueues) if (schedule.rowReturned(queue)) woken = true;
    if (woken) this.#loops[0]?.wakeup.notify();
  }

  /**
   * Graceful stop: claim nothing more; each running batch starts no more rows, waits for its running
   * handler and commits. After `gracefulTimeoutMs` the running handlers are aborted and abandoned:
   * their batches commit what finished, and the abandoned rows are unlocked as they were, uncounted,
   * for the next claim anywhere. Those COMMITs are waited for ABANDONED_COMMIT_WAIT_MS at most: a
   * batch still in a statement then (a frozen server or connection, a checkout that cannot connect)
   * is left to fail when the Outbox closes its pool, or when its statement times out (queryTimeoutMs),
   * and its rows, never committed, are delivered again.
   */
  async stop(gracefulTimeoutMs: number): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'stopping') return;
    const wasRunning = this.#state === 'running';
    this.#state = 'stopping';
    for (const loop of this.#loops) loop.wakeup.notify();
    if (!wasRunning) {
      this.#state = 'stopped';
      return;
    }
    const stopBegan = performance.now();
    this.#hurry.hurry();
    const loops = this.#loop ?? Promise.resolve();
    const timedOut = await beforeDeadline(
      loops.then(() => false),
      gracefulTimeoutMs,
      () => true,
    );
    if (!timedOut) await this.#awaitQuestions(gracefulTimeoutMs - (performance.now() - stopBegan));
    this.#questionsGivenUp = true;
    if (timedOut) {
      const inFlight = [...this.#batches].reduce((sum, batch) => sum + batch.running, 0);
      for (const batch of this.#batches) batch.abandon(new Error('shutdown: graceful timeout reached'));
      this.#deps.logger.warn(
        { subscriber: this.options.name, inFlight, gracefulTimeoutMs },
        'drain timed out; the running handlers are aborted, their rows unlocked unchanged and delivered again',
      );
      this.#deps.emit?.({
        type: 'drain_timeout',
        subscriber: this.options.name,
        queues: this.options.queues,
        inFlight,
        timeoutSeconds: gracefulTimeoutMs / 1000,
      });
      const ended = await beforeDeadline(
        loops.then(() => true),
        ABANDONED_COMMIT_WAIT_MS,
        () => false,
      );
      if (!ended) {
        this.#deps.logger.warn(
          { subscriber: this.options.name, batches: this.#batches.size, waitedMs: ABANDONED_COMMIT_WAIT_MS },
          'row-lock batches still in a statement after the drain timed out (a frozen server or connection?); not waiting for them: their rows are delivered again unless they commit',
        );
      }
    }
    this.#retryAlarm?.clear();
    this.#idleProbe.stop();
    this.#state = 'stopped';
  }

  /**
   * Waits up to `ms` for the questions about lost COMMIT answers still asking, so that what they
   * learn (a batch's acks, or its rollback) is reported before stop() resolves and while the pool
   * is open. Past that it stops waiting: they report what they last heard, after stop() resolved.
   */
  async #awaitQuestions(ms: number): Promise<void> {
    const deadline = performance.now() + ms;
    // Again while any is left: one may have begun meanwhile (a COMMIT whose answer was lost as stop() began).
    while (this.#questions.size > 0) {
      const answered = await beforeDeadline(
        Promise.all(this.#questions).then(() => true),
        Math.max(0, deadline - performance.now()),
        () => false,
      );
      if (!answered) break;
    }
    if (this.#questions.size === 0) return;
    this.#deps.logger.warn(
      { subscriber: this.options.name, questions: this.#questions.size },
      "stop() stopped waiting for the server's answer about row-lock batches whose COMMIT went unanswered: they are reported as unknown",
    );
  }
}
