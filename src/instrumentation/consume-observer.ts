import type { ConsumeContext, ConsumeResult, Middleware, OutcomeWrite } from './middleware.js';

/**
 * The consume observer path (issue 18; decision record 0007): txoutbox's own consume middlewares
 * (prometheusMiddleware, tracingMiddleware) are written as start / end callbacks, and the generic
 * `consume(ctx, next)` hook is built from them (`observingConsume`). When every consume middleware
 * of an Outbox is one of these, MiddlewareChain.observe calls the callbacks directly: no `next()`
 * closure chain, no async function frame and promise per middleware, no `ctx.written` promise, and
 * no promise at all when the handler is synchronous. A user middleware anywhere in the list sends
 * every delivery through the generic onion chain, which runs the very same callbacks, so both paths
 * produce the same spans and metrics (test/integration/observer-seams.test.ts).
 */

/** A delivery as an observer sees it: the consume context without `written` (see ConsumeObserver.written). */
export type ObservedConsume = Omit<ConsumeContext, 'written'>;

/**
 * One consume middleware as callbacks. `S` is its per-delivery state (a span, a start time),
 * returned by `start` and handed back to the others.
 */
export interface ConsumeObserver<S = unknown> {
  /** Before the handler (and the observers inside this one). May set `ctx.traceId`. */
  start(ctx: ObservedConsume): S;
  /**
   * Runs `inner` (the observers inside this one and the handler) with what must be active around
   * the handler, such as a span's context; returns what `inner` returned, promise or not.
   */
  around?<R>(state: S, inner: () => R): R;
  /**
   * After the handler: `result` is how it ended; `undefined` when something inside this observer
   * failed (an inner observer or middleware threw), `thrown` being what it threw.
   */
  end(state: S, ctx: ObservedConsume, result: ConsumeResult | undefined, thrown: unknown): void;
  /**
   * Once the outcome's write landed: `write` is what the database did (what `ctx.written` resolves
   * with), `result` the delivery's final result, the one that was written. It differs from what
   * `end` saw when a middleware or observer outside this one failed the delivery afterwards (an ack
   * made a retry): count outcomes from it. Undefined only when the consume hook was called outside
   * an Outbox (not through MiddlewareChain) and failed inside. Must not throw.
   */
  written?(state: S, write: OutcomeWrite, result: ConsumeResult | undefined): void;
}

type AnyObserver = ConsumeObserver;

/**
 * The final result of each delivery that went through MiddlewareChain.consume with an observer's
 * hook in it, for that hook's `written`: ctx.written says what the database did, not with which
 * result, and the result is the chain's to decide after every hook returned. Keyed by the context,
 * so it goes with it; only the generic chain pays for it (the observer path hands it over itself).
 */
const WRITTEN_RESULTS = new WeakMap<ConsumeContext, ConsumeResult>();

/** MiddlewareChain.consume: the result the chain returns, and the outcome write will write, for `ctx`. */
export function rememberWrittenResult(ctx: ConsumeContext, result: ConsumeResult): void {
  WRITTEN_RESULTS.set(ctx, result);
}

/** The observer each of txoutbox's middlewares was built from, with the consume hook built from it. */
const OBSERVERS = new WeakMap<object, { readonly observer: AnyObserver; readonly consume: Middleware['consume'] }>();

/**
 * The generic consume hook of `observer`, for a chain that holds a user middleware too: the same
 * callbacks in the same order as MiddlewareChain.observe runs them.
 */
function observingConsume<S>(observer: ConsumeObserver<S>): NonNullable<Middleware['consume']> {
  return async (ctx, next) => {
    const state = observer.start(ctx);
    let result: ConsumeResult | undefined;
    let thrown: unknown;
    try {
      result = await (observer.around === undefined ? next() : observer.around(state, next));
    } catch (error) {
      thrown = error;
      throw error;
    } finally {
      // Registered before end(), which may throw: a started observer always hears the write. The
      // chain's result is set before the write starts, so before ctx.written resolves; without a
      // chain (a hook called directly), this hook's own view is all there is.
      if (observer.written !== undefined)
        void ctx.written.then((write) => {
          try {
            observer.written?.(state, write, WRITTEN_RESULTS.get(ctx) ?? result);
          } catch {
            // A metrics failure loses a sample; thrown here it would be an unhandled rejection.
          }
        });
      observer.end(state, ctx, result, thrown);
    }
  };
}

/**
 * A middleware whose consume hook is `observer`'s: `rest` brings its name and its other hooks. The
 * observer is remembered for MiddlewareChain (consumeObserverOf).
 */
export function observingMiddleware<S>(observer: ConsumeObserver<S>, rest: Omit<Middleware, 'consume'>): Middleware {
  const consume = observingConsume(observer);
  const middleware: Middleware = { ...rest, consume };
  OBSERVERS.set(middleware, { observer, consume });
  return middleware;
}

/**
 * The observer behind `middleware`'s consume hook, when it is one of txoutbox's and its `consume`
 * is still the one built from it (an application that replaced the hook, or copied the object,
 * gets the generic path, which runs whatever hook it now has).
 */
export function consumeObserverOf(middleware: Middleware): AnyObserver | undefined {
  const entry = OBSERVERS.get(middleware);
  return entry !== undefined && entry.consume === middleware.consume ? entry.observer : undefined;
}
