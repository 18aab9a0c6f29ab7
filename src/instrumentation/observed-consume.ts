import { errorMessage } from '../errors.js';
import type { Logger } from '../util/logger.js';
import type { ConsumeObserver, ObservedConsume } from './consume-observer.js';
import type { ConsumeResult, OutcomeWrite } from './middleware.js';

type AnyObserver = ConsumeObserver;

/** The state slot of an observer that did not start (one outside it threw in `start`). */
const NOT_STARTED = Symbol('not started');

/**
 * One NOT_STARTED slot per observer, at its final size: an empty array grown by push() got a
 * backing store of 17 slots per delivery (~150 bytes of garbage per message), and
 * `new Array(n).fill()` is a builtin call that took twice as long as push(), so the one- and
 * two-observer cases (Prometheus, tracing, both) are literals (issue 18, round ten).
 */
function notStarted(count: number): unknown[] {
  if (count === 1) return [NOT_STARTED];
  if (count === 2) return [NOT_STARTED, NOT_STARTED];
  return new Array<unknown>(count).fill(NOT_STARTED);
}

/** What the caller does with the delivery's result: the outcome write, told to `onWritten` when it lands. */
export type Settle = (result: ConsumeResult, onWritten: ((write: OutcomeWrite) => void) | undefined) => Promise<void> | undefined;

/** Fails the delivery as MiddlewareChain.consume's `fail` does. */
export type Fail = (error: unknown, handlerResult: ConsumeResult | undefined) => ConsumeResult;

/**
 * Hears a result that comes later (LaterResult): what is left of the delivery once it came, as
 * `Settle` returns it.
 */
export interface ResultListener {
  /** The inner step's result came. */
  decided(result: ConsumeResult): Promise<void> | undefined;
  /** The inner step failed outside the handler (deliver() catches the handler's own failures). */
  threw(error: unknown): Promise<void> | undefined;
}

/**
 * A result the inner step hands over later, heard by one listener without a promise (deliver.ts's
 * PendingRun, an asynchronous handler's run): `listen` is called once, after every observer's
 * `around` returned it (so outside them), and not at all when one of them threw on the way out:
 * the observers then end the delivery themselves, and the result goes nowhere. A class, not an
 * interface: `instanceof` tells it from a result at a fraction of a duck-typed `listen` lookup's
 * cost on every synchronous delivery (measured: ~0.15 µs per delivery with Prometheus observing).
 */
export abstract class LaterResult {
  abstract listen(listener: ResultListener): void;
}

/** observeConsume's answer for a LaterResult: the listener carries the delivery on. */
export const LATER = Symbol('later');

/** The observers' end of one delivery whose result comes later: finish() once it came. */
class ObservedEnd implements ResultListener {
  readonly #observers: readonly AnyObserver[];
  readonly #logger: Logger;
  readonly #ctx: ObservedConsume;
  readonly #states: readonly unknown[];
  readonly #fail: Fail;
  readonly #settle: Settle;

  constructor(
    observers: readonly AnyObserver[],
    logger: Logger,
    ctx: ObservedConsume,
    states: readonly unknown[],
    fail: Fail,
    settle: Settle,
  ) {
    this.#observers = observers;
    this.#logger = logger;
    this.#ctx = ctx;
    this.#states = states;
    this.#fail = fail;
    this.#settle = settle;
  }

  decided(result: ConsumeResult): Promise<void> | undefined {
    return finish(this.#observers, this.#logger, this.#ctx, this.#states, result, undefined, this.#fail, this.#settle);
  }

  threw(error: unknown): Promise<void> | undefined {
    return finish(this.#observers, this.#logger, this.#ctx, this.#states, undefined, error, this.#fail, this.#settle);
  }
}

/**
 * One delivery through consume observers (consume-observer.ts): `start` outermost first, each
 * inside the `around` of the ones outside it, `inner` inside them all, then `end` innermost first,
 * and `written` (innermost first, with the final result) when the outcome's write landed. The
 * failure rules are MiddlewareChain.consume's, step for step: an observer that throws in `start`
 * makes the ones outside it end with that error (the ones inside never start); one that throws in
 * `end` makes the ones outside it end with that error; either way the delivery fails through
 * `fail` unless the handler's own result is already an error. Returns what `settle`
 * returns: nothing at all for a synchronous handler whose ack went to the acker. For a LaterResult,
 * LATER: its listener does all that when the result comes, and hands on what `settle` returned.
 */
export function observeConsume(
  observers: readonly AnyObserver[],
  logger: Logger,
  ctx: ObservedConsume,
  inner: () => ConsumeResult | Promise<ConsumeResult> | LaterResult,
  fail: Fail,
  settle: Settle,
): Promise<void> | undefined | typeof LATER {
  const states = notStarted(observers.length);
  let run: ConsumeResult | Promise<ConsumeResult> | LaterResult;
  try {
    run = enter(observers, states, ctx, 0, inner);
  } catch (error) {
    return finish(observers, logger, ctx, states, undefined, error, fail, settle);
  }
  if (run instanceof LaterResult) {
    run.listen(new ObservedEnd(observers, logger, ctx, states, fail, settle));
    return LATER;
  }
  if (!(run instanceof Promise)) return finish(observers, logger, ctx, states, run, undefined, fail, settle);
  return run.then(
    (result) => finish(observers, logger, ctx, states, result, undefined, fail, settle),
    (error: unknown) => finish(observers, logger, ctx, states, undefined, error, fail, settle),
  );
}

/**
 * Starts the observers from `index` in, each inside the `around` of the ones before it (as the
 * generic chain runs a middleware's code before next() inside the outer middlewares' context), and
 * `inner` inside them all. `states[i]` is observer i's state once it started.
 */
function enter<R>(observers: readonly AnyObserver[], states: unknown[], ctx: ObservedConsume, index: number, inner: () => R): R {
  for (let i = index; i < observers.length; i++) {
    const observer = observers[i] as AnyObserver;
    const state = observer.start(ctx);
    states[i] = state;
    if (observer.around !== undefined) return observer.around(state, () => enter(observers, states, ctx, i + 1, inner));
  }
  return inner();
}

function finish(
  observers: readonly AnyObserver[],
  logger: Logger,
  ctx: ObservedConsume,
  states: readonly unknown[],
  result: ConsumeResult | undefined,
  thrown: unknown,
  fail: Fail,
  settle: Settle,
): Promise<void> | undefined {
  // Failed inside: the observers still inside see the failure, as next() rejecting would show it.
  let failed = result === undefined;
  let chainError = thrown;
  for (let i = states.length - 1; i >= 0; i--) {
    if (states[i] === NOT_STARTED) continue;
    try {
      (observers[i] as AnyObserver).end(states[i], ctx, failed ? undefined : result, chainError);
    } catch (error) {
      failed = true;
      chainError = error;
    }
  }
  let final: ConsumeResult;
  if (!failed && result !== undefined) final = result;
  else {
    logger.warn(
      { subscriber: ctx.subscriber, queue: ctx.queue, messageId: ctx.messageId, err: errorMessage(chainError) },
      'a consume middleware failed; the delivery counts as failed',
    );
    final = result !== undefined && result.status === 'error' ? result : fail(chainError, result);
  }
  return settle(final, writtenOf(observers, states, logger, final));
}

/**
 * Tells every started observer that has a `written` callback what the write did, and with which
 * result: `final`, the one settle() writes, not the one each observer's `end` saw (an observer
 * outside may have failed an ack into a retry). Undefined when no observer listens.
 */
function writtenOf(
  observers: readonly AnyObserver[],
  states: readonly unknown[],
  logger: Logger,
  final: ConsumeResult,
): ((write: OutcomeWrite) => void) | undefined {
  let any = false;
  for (let i = 0; i < states.length; i++)
    if (states[i] !== NOT_STARTED && (observers[i] as AnyObserver).written !== undefined) any = true;
  if (!any) return undefined;
  return (write) => {
    // Innermost first, like the generic chain's ctx.written callbacks (registered as each hook returns).
    for (let i = states.length - 1; i >= 0; i--) {
      if (states[i] === NOT_STARTED) continue;
      const observer = observers[i] as AnyObserver;
      try {
        observer.written?.(states[i], write, final);
      } catch (error) {
        // The acker's settle must not throw (acker.ts); a metrics failure loses a sample, never a write.
        logger.debug({ err: errorMessage(error) }, 'a consume observer threw on the written outcome; ignored');
      }
    }
  };
}
