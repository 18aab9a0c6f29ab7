import { performance } from 'node:perf_hooks';

import { errorMessage } from '../errors.js';
import { type ObservedConsume, rememberWrittenResult } from '../instrumentation/consume-observer.js';
import type { CustomStatKeys } from '../instrumentation/custom-stats.js';
import type { ConsumeContext, ConsumeOutcome, ConsumeResult, OutcomeWrite } from '../instrumentation/middleware.js';
import type { MiddlewareChain } from '../instrumentation/middleware-chain.js';
import { LATER, LaterResult, type ResultListener } from '../instrumentation/observed-consume.js';
import type { Emit } from '../instrumentation/recorders.js';
import type { RetryStrategy } from '../retry/retry-strategy.js';
import { MAX_DELAY_MS } from '../retry/retry-strategy.js';
import { defaultRetry } from '../retry/strategies.js';
import type { Logger } from '../util/logger.js';
import type { AckEntry } from './acker.js';
import { type Decision, DeliveryControls } from './decision.js';
import type { DeliverySignal, Interruptible } from './delivery-signal.js';
import { type Committed, type DeliveryTransactions, type HeldForOutcome, runInTransaction } from './delivery-transaction.js';
import type { PublishFollowUp } from './follow-up.js';
import { deliveryScope, dispatchedEvent, type Lease } from './lease.js';
import { correlationIdOf, type Handler, toMessage } from './message.js';
import type { OutcomeWriter, Run } from './outcome-writer.js';
import type { ResolvedSubscribeOptions } from './subscription-options.js';

export interface DeliverDeps {
  readonly options: ResolvedSubscribeOptions;
  readonly handler: Handler;
  /** Where the outcome goes: the OutcomeWriter, or txoutbox/testing's in-memory table. */
  readonly writer: Pick<OutcomeWriter, 'ack' | 'retry' | 'terminal'>;
  readonly logger: Logger;
  readonly emit: Emit;
  readonly middlewares: MiddlewareChain;
  readonly customStats: CustomStatKeys;
  /**
   * The wall clock in ms (run start, message age, the retry strategy's attempt times). Default
   * Date.now; txoutbox/testing passes its controllable clock so retry schedules follow it.
   */
  readonly now?: () => number;
  /** Where `ctx.publish` goes (the Outbox's publish). Without it, ctx.publish rejects. */
  readonly followUp?: PublishFollowUp;
  /** Required when options.transactional: the deliveries' transactions (delivery-transaction.ts). */
  readonly transactions?: DeliveryTransactions;
}

const ACK: ConsumeOutcome = { kind: 'ack' };

const NO_FOLLOW_UP: PublishFollowUp = () =>
  Promise.reject(new Error('ctx.publish is not available here: no publish was wired to this delivery'));

/** Asks the strategy for a delay; a throwing or nonsensical strategy ends the row instead of the loop. */
function retryDelay(
  strategy: RetryStrategy,
  lease: Lease,
  run: Run,
  error: unknown,
  logger: Logger,
  instead = 'ending the row as retry_terminal',
): number | null {
  try {
    const delay = strategy.nextDelayMs({
      attempt: lease.record.attempts_count + 1,
      firstAttemptAt: lease.record.first_attempt_at ?? run.startedAt,
      lastAttemptAt: run.startedAt,
      error,
    });
    if (delay === null) return null;
    if (typeof delay !== 'number' || !Number.isFinite(delay) || delay < 0) {
      logger.error({ messageId: lease.record.id, delay: String(delay) }, `retry strategy returned an invalid delay; ${instead}`);
      return null;
    }
    return Math.min(delay, MAX_DELAY_MS);
  } catch (strategyError) {
    logger.error({ messageId: lease.record.id, err: errorMessage(strategyError) }, `retry strategy threw; ${instead}`);
    return null;
  }
}

/** What a decision means for the row: ack, retry after a delay, or end it. */
function plan(decision: Decision, lease: Lease, run: Run, deps: DeliverDeps): ConsumeOutcome {
  switch (decision.kind) {
    case 'ack':
      return { kind: 'ack' };
    case 'reject':
      return { kind: 'terminal', reason: 'rejected' };
    case 'nack': {
      const delayMs = decision.delayMs ?? retryDelay(deps.options.retry, lease, run, decision.error, deps.logger);
      if (delayMs === null) return { kind: 'terminal', reason: 'retry_terminal' };
      return { kind: 'retry', delayMs: Math.min(Math.max(0, delayMs), MAX_DELAY_MS) };
    }
    default: {
      const unreachable: never = decision;
      throw new Error(`unknown decision ${JSON.stringify(unreachable)}`);
    }
  }
}

const STATUS_OF: Record<Decision['kind'], ConsumeResult['status']> = { ack: 'acked', nack: 'nacked', reject: 'rejected' };

/**
 * One delivery's handler run: its start and length (numbers on the hot path, a Date only for retry
 * bookkeeping), and, when it acks, its entry in the acker's queue (AckEntry) and — with no consume
 * middleware to hand a result to — its ConsumeResult. One object per delivery where there were a
 * timing record, a result and an ack entry (issue 18: allocation per message is a drain's GC).
 */
class HandlerRun implements AckEntry, ConsumeResult {
  readonly lease: Lease;
  startedAtMs = 0;
  durationSeconds = 0;
  written: ((result: OutcomeWrite) => void) | undefined = undefined;
  status: ConsumeResult['status'] = 'acked';
  error: unknown = undefined;
  outcome: ConsumeOutcome = ACK;

  constructor(lease: Lease) {
    this.lease = lease;
  }
}

type Timing = HandlerRun;

function runOf(timing: Timing): Run {
  return { startedAt: new Date(timing.startedAtMs), durationSeconds: timing.durationSeconds };
}

/**
 * Decode, run the handler under the ack policy, decide. The innermost step of the consume chain.
 * Synchronous when the handler is: a handler that returns no promise is decided at its return, with
 * no promise made here (a promise and two microtask hops per message were a measurable share of a
 * drain's CPU: issue 18). A handler that returns one gets a PendingRun, which its caller tells where
 * the result goes. A decision a handler makes after it returned (or after its promise settled) is
 * ignored, as DeliveryControls says.
 */
function runHandler<S extends DeliverySignal>(
  lease: Lease,
  signal: S,
  controls: DeliveryControls,
  timing: Timing,
  deps: DeliverDeps,
  plain: boolean,
): ConsumeResult | PendingRun<S> {
  timing.startedAtMs = (deps.now ?? Date.now)();
  const t0 = performance.now();
  // Timed out before its handler started (a consume middleware held the run past its bound): the
  // delivery has failed already, and a handler started now would run outside its lease.
  if (signal.timedOut) {
    signal.handlerEnded = true;
    return decided(lease, controls, timing, deps, t0, true, signal.signal.reason, plain);
  }
  let returned: unknown;
  let thenable: boolean;
  try {
    // Decoding inside the chain: a malformed body fails like a throwing handler, inside the span.
    returned = deps.handler(toMessage(lease.record), controls);
    // Inside the try: reading a returned object's `then` can throw (a getter), and that is the
    // handler's failure, not the delivery's.
    thenable = isThenable(returned);
  } catch (error) {
    signal.handlerEnded = true;
    return decided(lease, controls, timing, deps, t0, true, error, plain);
  }
  if (!thenable) {
    signal.handlerEnded = true;
    return decided(lease, controls, timing, deps, t0, false, undefined, plain);
  }
  // Awaited once the caller said where the result goes (asPromise, listen, writeThenEnd): `await`
  // can throw before returning (a promise whose `constructor` getter throws), and that result must
  // not come before anyone listens.
  const pending = new PendingRun(lease, signal, controls, timing, deps, t0, plain, returned as PromiseLike<unknown>);
  signal.pending = pending;
  return pending;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/**
 * Decides `pending` when the handler's promise settles (unless a timeout decided it first). Rejects
 * only when the caller's DeliveryEnds throws, as a promise's reaction would have.
 */
async function untilSettled<S extends DeliverySignal>(pending: PendingRun<S>, returned: PromiseLike<unknown>): Promise<void> {
  try {
    await returned;
  } catch (error) {
    pending.settle(true, error);
    return;
  }
  pending.settle(false, undefined);
}

/**
 * An asynchronous handler's run, from the promise it returned to its result. Decided once: when
 * the promise settles, or when the delivery is timed out first (signal.timeOut → interrupt), so a
 * promise that never settles does not hold its row, its slot and its ordering key for good. What
 * the handler does after that is ignored (its decisions too: DeliveryControls was settled).
 *
 * The result goes where the caller said, right after runHandler returned:
 * - a promise's resolve (the generic chain's inner step, a transaction's): asPromise;
 * - the consume observers' listener (observed-consume.ts), which ends their calls and writes the
 *   outcome: observedBy, then listen (or drop, when the observers ended the delivery without it);
 * - straight to the outcome write (no consume middleware): writeThenEnd.
 * In the last two the DeliveryEnds hears the delivery's end. One object where a promise, a promise
 * per `then` and four closures per delivery were: ~0.2 µs per delivery in deliver() alone
 * (`bench:deliver-cpu`), and in a row-lock drain 0.75–2.8 µs of Node CPU per message, callers'
 * promises and garbage included (`bench:drain-cpu`; BENCHMARKS.md, "Round nineteen").
 */
class PendingRun<S extends DeliverySignal> extends LaterResult implements Interruptible {
  readonly #lease: Lease;
  readonly #signal: S;
  readonly #controls: DeliveryControls;
  readonly #timing: Timing;
  readonly #deps: DeliverDeps;
  readonly #t0: number;
  readonly #plain: boolean;
  readonly #returned: PromiseLike<unknown>;
  #open = true;
  /** The promise form's. */
  #resolve: ((result: ConsumeResult) => void) | undefined = undefined;
  #reject: ((error: unknown) => void) | undefined = undefined;
  /** Who hears the end (the observed and direct forms). */
  #ends: DeliveryEnds<S> | undefined = undefined;
  /** The observed form's: the result goes to it, not to the outcome write. */
  #listener: ResultListener | undefined = undefined;
  /** The direct form's. */
  #abandoned: (() => boolean) | undefined = undefined;

  constructor(
    lease: Lease,
    signal: S,
    controls: DeliveryControls,
    timing: Timing,
    deps: DeliverDeps,
    t0: number,
    plain: boolean,
    returned: PromiseLike<unknown>,
  ) {
    super();
    this.#lease = lease;
    this.#signal = signal;
    this.#controls = controls;
    this.#timing = timing;
    this.#deps = deps;
    this.#t0 = t0;
    this.#plain = plain;
    this.#returned = returned;
  }

  /** The promise form: the result as a promise. Called once, at once. */
  asPromise(): Promise<ConsumeResult> {
    return new Promise<ConsumeResult>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
      void untilSettled(this, this.#returned);
    });
  }

  /**
   * The direct form: the result's outcome is written (or handed to the acker) at once, and `ends`
   * hears the delivery's end. Called once, at once.
   */
  writeThenEnd(abandoned: () => boolean, ends: DeliveryEnds<S>): void {
    this.#abandoned = abandoned;
    this.#ends = ends;
    void untilSettled(this, this.#returned);
  }

  /** The observed form, first half: `ends` hears the delivery's end. listen() or drop() follows. */
  observedBy(ends: DeliveryEnds<S>): void {
    this.#ends = ends;
  }

  /** The observed form: the result goes to `listener` (LaterResult). Called once, at once. */
  listen(listener: ResultListener): void {
    this.#listener = listener;
    void untilSettled(this, this.#returned);
  }

  /**
   * The observed form when an observer's `around` threw once the handler started: the observers
   * ended the delivery. The handler's promise is still awaited (its rejection is not an unhandled
   * one, and a timeout still fails the run), and its result goes nowhere.
   */
  drop(): void {
    void untilSettled(this, this.#returned);
  }

  interrupt(reason: unknown): void {
    this.settle(true, reason, true);
  }

  /**
   * The handler settled (`threw`: rejected with `error`), or was timed out (`interrupted`): decides
   * the run, once.
   */
  settle(threw: boolean, error: unknown, interrupted = false): void {
    if (!this.#open) return;
    this.#open = false;
    this.#signal.pending = undefined;
    this.#signal.handlerEnded = true;
    // Decided now, whatever comes later: a decision the handler makes after this is ignored.
    let result: ConsumeResult | undefined;
    let fault: { error: unknown } | undefined;
    try {
      result = decided(this.#lease, this.#controls, this.#timing, this.#deps, this.#t0, threw, error, this.#plain);
    } catch (thrown) {
      // Only a fault outside the handler (a throwing logger): nothing was decided for the row.
      fault = { error: thrown };
    }
    if (this.#resolve !== undefined) {
      if (fault === undefined) this.#resolve(result as ConsumeResult);
      else this.#reject?.(fault.error);
      return;
    }
    // A timeout comes from a loop over the running deliveries (a subscription's #boundRuns, a
    // row-lock batch's #expire): the delivery's end must not change them under that loop, so it
    // comes after it, as a promise's reaction would.
    if (interrupted)
      queueMicrotask(() => {
        this.#end(result, fault);
      });
    else this.#end(result, fault);
  }

  /**
   * The observed and direct forms: the listener's work or the outcome write, then the end.
   * deliver() returned false (or will: an `await` that threw at once ends the run inside it), so
   * `ends` hears of every end, an ack's too. A fault with no listener leaves the row undecided
   * (leased, delivered again); a listener fails the delivery under the ack policy, as the generic
   * chain does.
   */
  #end(result: ConsumeResult | undefined, fault: { error: unknown } | undefined): void {
    const ends = this.#ends as DeliveryEnds<S>;
    const lease = this.#lease;
    const signal = this.#signal;
    const listener = this.#listener;
    const abandoned = this.#abandoned;
    // Neither: dropped (see drop()), the delivery ended by the observers.
    if (listener === undefined && abandoned === undefined) return;
    let running: Promise<void> | undefined;
    try {
      if (listener !== undefined)
        running = fault === undefined ? listener.decided(result as ConsumeResult) : listener.threw(fault.error);
      else if (fault !== undefined) throw fault.error;
      else running = written(lease, result as ConsumeResult, this.#timing, abandoned as () => boolean, this.#deps, undefined);
    } catch (error) {
      ends.failed(lease, signal, error);
      return;
    }
    if (running === undefined) ends.ended(lease, signal);
    else endWhenSettled(running, lease, signal, ends);
  }
}

/** runHandler as a promise of a plain result, for the consume chain and the transaction that wrap it. */
function runHandlerAsync(
  lease: Lease,
  signal: DeliverySignal,
  controls: DeliveryControls,
  timing: Timing,
  deps: DeliverDeps,
): Promise<ConsumeResult> {
  const run = runHandler(lease, signal, controls, timing, deps, true);
  return run instanceof PendingRun ? run.asPromise() : Promise.resolve(run);
}

/**
 * The handler returned (or threw): its decision under the ack policy, as the chain's result.
 * `plain`: a result object of its own (middlewares see it); otherwise an ack's result is the run.
 */
function decided(
  lease: Lease,
  controls: DeliveryControls,
  timing: Timing,
  deps: DeliverDeps,
  t0: number,
  threw: boolean,
  error: unknown,
  plain: boolean,
): ConsumeResult {
  const { decision, forgotten } = controls.settle(threw, error);
  timing.durationSeconds = (performance.now() - t0) / 1000;
  if (forgotten)
    deps.logger.error(
      deliveryScope(lease, deps.options.name),
      'manual handler returned without ctx.ack(), nack() or reject(); treating it as nack (retry), never as a silent delete',
    );
  if (decision.kind === 'ack' && !threw)
    return plain ? { status: 'acked', error: undefined, durationSeconds: timing.durationSeconds, outcome: ACK } : timing;
  // A handler that threw after deciding (`ctx.ack()` then a throw) keeps its decision, but the
  // result still reports the error it threw: metrics and spans must not say `error` without one.
  const decidedError =
    decision.kind === 'ack'
      ? undefined
      : (decision.error ??
        (decision.kind === 'reject' && decision.reason !== undefined ? new Error(`rejected: ${decision.reason}`) : undefined));
  return {
    status: threw ? 'error' : STATUS_OF[decision.kind],
    error: decidedError ?? error,
    durationSeconds: timing.durationSeconds,
    outcome: plan(decision, lease, runOf(timing), deps),
  };
}

/**
 * Hears the end of a delivery for which deliver() returns false: once, with its lease and signal,
 * usually later (possibly before deliver() returns, never when it returns true). One object per
 * subscription or batch, where a promise and two closures per delivery were (issue 18).
 */
export interface DeliveryEnds<S extends DeliverySignal> {
  /** The delivery is over: its outcome was written, handed to the acker, or given up. */
  ended(lease: Lease, signal: S): void;
  /** A fault outside the handler (deliver() catches the handler's own): nothing may have been decided for the row. */
  failed(lease: Lease, signal: S, error: unknown): void;
}

/**
 * One delivery: the max-deliveries gate, then the middleware chain around the handler (decode,
 * run under the ack policy, decide), then the outcome write (awaited for retries and terminal
 * moves; an ack is handed to the coalescing acker).
 * Every failure path either records a terminal decision or leaves the row leased.
 * `abandoned()` turns true when shutdown stopped waiting: the outcome is then not written (the pool
 * may be gone), and the row is redelivered after its lease expires.
 * Returns true when the delivery ended before it returned: no transaction, no consume middleware
 * but txoutbox's own observers, a handler that returned no promise and an ack (handed to the
 * acker); `ends` hears nothing then.
 * Otherwise `ends` hears its end (see DeliveryEnds). Throws only for a fault outside the handler,
 * before any outcome was decided.
 * Per message this allocates little beyond the handler's message and ctx: events only when a
 * recorder listens, the middleware context only when a consume middleware runs, promises only
 * when something is asynchronous, and an asynchronous handler's run one object.
 */
export function deliver<S extends DeliverySignal>(
  lease: Lease,
  signal: S,
  abandoned: () => boolean,
  deps: DeliverDeps,
  ends: DeliveryEnds<S>,
): boolean {
  const { options, logger } = deps;
  const { record } = lease;

  if (options.maxDeliveries !== undefined && record.deliveries_count > options.maxDeliveries) {
    logger.error(
      { ...deliveryScope(lease, options.name), maxDeliveries: options.maxDeliveries },
      'row exceeded maxDeliveries; ending it without running the handler',
    );
    // No error of this run: the writer reports the last one a handler run recorded on the row.
    return endWhenSettled(deps.writer.terminal(lease, 'max_deliveries', undefined, undefined), lease, signal, ends);
  }

  deps.emit?.(dispatchedEvent(lease, options.name, (deps.now ?? Date.now)()));
  const stats = deps.customStats.forDelivery(options.name, record.queue);
  const controls = new DeliveryControls(
    options.ackPolicy,
    signal,
    options.name,
    stats,
    logger,
    lease,
    deps.followUp ?? NO_FOLLOW_UP,
  );
  const timing = new HandlerRun(lease);
  if (!options.transactional && deps.middlewares.observed)
    return observedConsume(lease, signal, abandoned, deps, controls, timing, ends);
  if (options.transactional || deps.middlewares.hasConsume)
    return endWhenSettled(wrapped(lease, signal, abandoned, deps, controls, timing), lease, signal, ends);
  const result = runHandler(lease, signal, controls, timing, deps, false);
  if (!(result instanceof PendingRun))
    return endWhenSettled(written(lease, result, timing, abandoned, deps, undefined), lease, signal, ends);
  result.writeThenEnd(abandoned, ends);
  return false;
}

/** deliver() as a promise of the delivery's end (txoutbox/testing's drain, one delivery at a time). */
export function deliverAsPromise(
  lease: Lease,
  signal: DeliverySignal,
  abandoned: () => boolean,
  deps: DeliverDeps,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (
      deliver(lease, signal, abandoned, deps, {
        ended: () => {
          resolve();
        },
        failed: (_lease, _signal, error) => {
          reject(error instanceof Error ? error : new Error(errorMessage(error), { cause: error }));
        },
      })
    )
      resolve();
  });
}

/** true when `running` is no promise (the delivery is over); else false, and `ends` hears when it settles. */
function endWhenSettled<S extends DeliverySignal>(
  running: Promise<unknown> | undefined,
  lease: Lease,
  signal: S,
  ends: DeliveryEnds<S>,
): boolean {
  if (running === undefined) return true;
  running.then(
    () => {
      ends.ended(lease, signal);
    },
    (error: unknown) => {
      ends.failed(lease, signal, error);
    },
  );
  return false;
}

/** A delivery with consume middlewares or a transaction around its handler. */
async function wrapped(
  lease: Lease,
  signal: DeliverySignal,
  abandoned: () => boolean,
  deps: DeliverDeps,
  controls: DeliveryControls,
  timing: Timing,
): Promise<void> {
  const { options } = deps;
  const committed: Committed = { result: undefined };
  const { transactions } = deps;
  const run = options.transactional
    ? () =>
        runInTransaction(
          transactions,
          lease,
          controls,
          signal,
          abandoned,
          committed,
          () => runHandlerAsync(lease, signal, controls, timing, deps),
          (error, handlerResult, transientFault) => failed(error, handlerResult, lease, timing, deps, transientFault),
        )
    : () => runHandlerAsync(lease, signal, controls, timing, deps);
  // Tells the consume middlewares what the database did with the outcome (ctx.written).
  let onWritten: ((result: OutcomeWrite) => void) | undefined;
  const ctx = deps.middlewares.hasConsume ? consumeContext(lease, options.name, (resolve) => (onWritten = resolve)) : undefined;
  // What the transaction committed with: the handler's result, before any middleware's view of it.
  let committedWith: ConsumeResult | undefined;
  let result: ConsumeResult;
  try {
    result =
      ctx !== undefined
        ? await deps.middlewares.consume(
            ctx,
            options.transactional ? async () => (committedWith = await run()) : run,
            (error, handlerResult) => failed(error, handlerResult, lease, timing, deps),
          )
        : await run();
  } catch (error) {
    // Never left open, whatever failed after the run held its transaction.
    committed.held?.end(error);
    throw error;
  }
  // A transactional ack already committed (or was fenced off) in the handler's transaction: that is
  // what the database did, whatever a middleware made of the result afterwards, and what the
  // observers' written counts (an outer middleware's throw after next() did not undo the commit).
  if (committed.result !== undefined && transactions !== undefined) {
    if (ctx !== undefined && committedWith !== undefined) rememberWrittenResult(ctx, committedWith);
    transactions.settled(lease, result.durationSeconds, committed.result, onWritten);
    return;
  }
  const { held } = committed;
  if (held === undefined) {
    await written(lease, result, timing, abandoned, deps, onWritten);
    return;
  }
  // A failed transactional run: its retry or DLQ write commits its transaction, the row locked
  // until then. Ended unwritten otherwise (an ack handed to the acker, a delivery given up).
  try {
    await written(lease, result, timing, abandoned, deps, onWritten, held);
  } finally {
    held.end(new Error("a failed run's transaction ended without its outcome write"));
  }
}

/**
 * The outcome write: an ack is handed to the acker (nothing to wait for), a retry or a terminal
 * move is written now (a promise of it). `onWritten` hears what the database did (ctx.written).
 * `held`: where a retry or terminal write runs instead of the pool (a failed transactional run's
 * transaction, which it commits).
 */
function written(
  lease: Lease,
  result: ConsumeResult,
  timing: Timing,
  abandoned: () => boolean,
  deps: DeliverDeps,
  onWritten: ((result: OutcomeWrite) => void) | undefined,
  held?: HeldForOutcome,
): Promise<void> | undefined {
  const { writer } = deps;
  if (abandoned()) {
    deps.logger.warn(
      deliveryScope(lease, deps.options.name),
      'handler finished after its delivery was given up (shutdown stopped waiting, or it was timed out and its outcome decided without it); nothing of it is written',
    );
    onWritten?.('abandoned');
    return undefined;
  }
  const { outcome } = result;
  switch (outcome.kind) {
    case 'ack':
      // Not awaited: the slot takes the next row while the acker batches this delete with the
      // others of this turn (one DELETE per turn instead of one per message; stop() drains the
      // acker). The lease stays held until the DELETE lands, so a crash meanwhile redelivers.
      // The run is the acker's entry: its fields are what the first three arguments say.
      timing.durationSeconds = result.durationSeconds;
      timing.written = onWritten;
      writer.ack(lease, result.durationSeconds, onWritten, timing);
      return undefined;
    case 'terminal':
      return writer.terminal(lease, outcome.reason, result.error, runOf(timing), held).then((write) => {
        onWritten?.(write);
      });
    case 'retry':
      return writer.retry(lease, runOf(timing), outcome.delayMs, result.error, held).then((write) => {
        onWritten?.(write);
      });
    default: {
      const unreachable: never = outcome;
      throw new Error(`unknown outcome ${JSON.stringify(unreachable)}`);
    }
  }
}

function consumeContext(
  lease: Lease,
  subscriber: string,
  onWritten: (resolve: (result: OutcomeWrite) => void) => void,
): ConsumeContext {
  return { written: new Promise<OutcomeWrite>(onWritten), ...observedScope(lease, subscriber) };
}

/** What a consume middleware or observer is told about a delivery (ConsumeContext without `written`). */
function observedScope(lease: Lease, subscriber: string): ObservedConsume {
  const { record } = lease;
  return {
    subscriber,
    queue: record.queue,
    messageId: record.id,
    correlationId: correlationIdOf(record),
    headers: record.headers,
    sizeBytes: record.payload.length,
    deliveriesCount: record.deliveries_count,
    createdAt: record.created_at,
    traceId: undefined,
  };
}

/**
 * A middleware failed around a handler that did not: fail the delivery as if the handler threw.
 * `transientFault`: a transactional delivery's own statements, or its handler's on ctx.client,
 * failed for the database's reasons (runInTransaction), which say nothing of the message: retried
 * whatever the ack policy (retryAfterFault).
 */
function failed(
  error: unknown,
  handlerResult: ConsumeResult | undefined,
  lease: Lease,
  timing: Timing,
  deps: DeliverDeps,
  transientFault = false,
): ConsumeResult {
  if (timing.startedAtMs === 0) timing.startedAtMs = (deps.now ?? Date.now)();
  const decision: Decision =
    deps.options.ackPolicy === 'reject_on_error'
      ? { kind: 'reject', reason: undefined, error }
      : { kind: 'nack', delayMs: undefined, error };
  const run = runOf(timing);
  return {
    status: 'error',
    error,
    durationSeconds: handlerResult?.durationSeconds ?? 0,
    outcome: transientFault ? retryAfterFault(decision, lease, run, deps) : plan(decision, lease, run, deps),
  };
}

/** The retries a database fault gets when the subscription's strategy has none left (NoRetry, its attempts used up). */
const FAULT_RETRY = defaultRetry();

/**
 * A transactional delivery whose statements failed for the database's reasons: a checkout
 * that timed out, a terminated backend or a serialization failure is no reason to reject a message.
 * Retried whatever the ack policy, after the retry strategy's delay, or, when it has none left,
 * the default strategy's (1 s doubling, 10 attempts over ~8.5 minutes): an outage that long ends
 * nothing. Past both, the failure is the ack policy's, as a handler's would be: a fault that comes
 * back every time (a deferred trigger of the handler's that always times out) must end somewhere.
 * Each retry counts an attempt, as a failed run does (architecture/transactional-consume.md).
 */
function retryAfterFault(decision: Decision, lease: Lease, run: Run, deps: DeliverDeps): ConsumeOutcome {
  const error = decision.kind === 'ack' ? undefined : decision.error;
  const { retry } = deps.options;
  const delayMs =
    retryDelay(retry, lease, run, error, deps.logger, 'retrying by the default strategy') ??
    retryDelay(FAULT_RETRY, lease, run, error, deps.logger);
  if (delayMs === null) return plan(decision, lease, run, deps);
  return { kind: 'retry', delayMs: Math.min(delayMs, MAX_DELAY_MS) };
}

/**
 * A delivery stuck outside its handler past its bound (a consume middleware that does not return):
 * its outcome under the ack policy, as if its handler had thrown `error` (a retry by default), is
 * written now. The caller sees to it that the stuck chain, if it ever ends, writes nothing.
 */
export function failStuck(lease: Lease, error: unknown, deps: DeliverDeps): Promise<void> | undefined {
  const timing = new HandlerRun(lease);
  return written(lease, failed(error, undefined, lease, timing, deps), timing, () => false, deps, undefined);
}

/**
 * A delivery whose consume middlewares are all txoutbox's own (instrumentation/consume-observer.ts):
 * their callbacks around the handler, without the chain's closures, promises and ctx.written.
 */
function observedConsume<S extends DeliverySignal>(
  lease: Lease,
  signal: S,
  abandoned: () => boolean,
  deps: DeliverDeps,
  controls: DeliveryControls,
  timing: Timing,
  ends: DeliveryEnds<S>,
): boolean {
  let running: Promise<void> | undefined | typeof LATER;
  try {
    running = deps.middlewares.observe(
      observedScope(lease, deps.options.name),
      () => {
        const run = runHandler(lease, signal, controls, timing, deps, false);
        if (run instanceof PendingRun) run.observedBy(ends);
        return run;
      },
      (error, handlerResult) => failed(error, handlerResult, lease, timing, deps),
      (result, onWritten) => written(lease, result, timing, abandoned, deps, onWritten),
    );
  } catch (error) {
    // A fault outside the handler while the observers ended the delivery (deliver()'s caller
    // hears of it): an async handler's run they did not listen to is still awaited.
    dropUnheard(signal);
    throw error;
  }
  return endAfterObserve(running, lease, signal, ends);
}

/** What observedConsume's observe() answered, as deliver() returns it (true: the delivery ended). */
function endAfterObserve<S extends DeliverySignal>(
  running: Promise<void> | undefined | typeof LATER,
  lease: Lease,
  signal: S,
  ends: DeliveryEnds<S>,
): boolean {
  if (running === LATER) return false;
  // The observers ended the delivery themselves (an around that threw on the way out).
  dropUnheard(signal);
  return endWhenSettled(running, lease, signal, ends);
}

/** An async handler's run (runHandler made it the signal's pending run) the observers did not listen to. */
function dropUnheard(signal: DeliverySignal): void {
  if (signal.pending instanceof PendingRun) signal.pending.drop();
}
