import { errorMessage, InvalidOptionError, MiddlewareError } from '../errors.js';
import type { Logger } from '../util/logger.js';
import { type ConsumeObserver, consumeObserverOf, type ObservedConsume, rememberWrittenResult } from './consume-observer.js';
import type { ConsumeContext, ConsumeResult, CustomStat, Middleware, PublishContext, PublishResult } from './middleware.js';
import { type Fail, type LATER, type LaterResult, observeConsume, type Settle } from './observed-consume.js';
import { safeInvoke } from './safe-invoke.js';

type Hook<C, R> = (ctx: C, next: () => Promise<R>) => Promise<void>;

interface Named<T> {
  readonly name: string;
  readonly hook: T;
}

/** What a misused next() is logged with: the fields both contexts share, and a consume's delivery. */
interface Where {
  readonly queue: string;
  readonly subscriber?: string;
  readonly messageId?: string;
}

/**
 * Runs `hooks` around `inner`, outermost first. Returns the inner run (undefined when some hook
 * never called next()) and the first error a hook threw, if any. Each hook's next() starts the
 * rest of the chain once, and only while the hook runs: a second call, or one after the hook's
 * promise settled, runs nothing (`refuse`). Allowing it ran the handler again after its outcome
 * was written, or an INSERT after publish() had returned (test/unit/middleware-chain-next.test.ts).
 */
async function run<C extends Where, R>(
  kind: 'consume' | 'publish',
  hooks: readonly Named<Hook<C, R>>[],
  ctx: C,
  inner: () => Promise<R>,
  logger: Logger,
): Promise<{ innerRun: Promise<R> | undefined; chainError: unknown }> {
  let innerRun: Promise<R> | undefined;
  const dispatch = async (index: number): Promise<R> => {
    const entry = hooks[index];
    if (entry === undefined) {
      innerRun = inner();
      return await innerRun;
    }
    let rest: Promise<R> | undefined;
    // One flag beside `rest`: the common path (one call while the hook runs) adds a boolean and a
    // try/finally, no closure or promise beyond next()'s own; this chain runs per message.
    let returned = false;
    try {
      await entry.hook(ctx, () => {
        if (rest === undefined && !returned) return (rest = dispatch(index + 1));
        return refuse(kind, entry.name, rest !== undefined, ctx, logger);
      });
    } finally {
      returned = true;
    }
    if (rest === undefined) throw new MiddlewareError(entry.name, 'returned without calling next()');
    return await rest;
  };
  try {
    await dispatch(0);
    return { innerRun, chainError: undefined };
  } catch (error) {
    return { innerRun, chainError: error };
  }
}

/**
 * A next() that must not run anything: rejects with a MiddlewareError naming the middleware, and
 * logs a warning, since a call made from a timer after the hook returned has nobody awaiting it.
 * The rejection is marked handled for the same reason: a misused next() must not end the process
 * through an unhandled rejection; a hook that awaits it still gets the error (and, if it lets it
 * through, fails the delivery or publish as any throwing hook does).
 */
function refuse(kind: 'consume' | 'publish', name: string, again: boolean, where: Where, logger: Logger): Promise<never> {
  const problem = again
    ? `called next() a second time in one ${kind}; the rest of the chain runs once, and was not run again (call next() once and keep its promise)`
    : `called next() after its ${kind} hook had returned without calling it, so the rest of the chain was not run (call next() before the hook's promise settles)`;
  // A second call's run stands as it ended; a late first call's hook had already failed the chain.
  const error = new MiddlewareError(
    name,
    problem,
    again ? `the ${kind}'s outcome is what the first next() led to, unless this rejection fails the hook` : undefined,
  );
  logger.warn(
    { middleware: name, subscriber: where.subscriber, queue: where.queue, messageId: where.messageId, err: error.message },
    `a ${kind} middleware misused next(); nothing was run again`,
  );
  const refused = Promise.reject(error);
  refused.catch(() => undefined);
  return refused;
}

/**
 * The middlewares of one Outbox, split by hook. With none registered for a kind, `consume` and
 * `publish` call straight through (no promise chain, no allocation beyond the call).
 */
export class MiddlewareChain {
  readonly #consume: Named<Hook<ConsumeContext, ConsumeResult>>[] = [];
  readonly #publish: Named<Hook<PublishContext, PublishResult>>[] = [];
  readonly #stat: Named<(stat: CustomStat) => void>[] = [];
  /** The consume hooks' observers, in order, when every consume middleware is one of txoutbox's (consume-observer.ts). */
  readonly #observers: readonly ConsumeObserver[] | undefined;
  /** True when some consume hook is an observer's: its `written` needs the chain's final result. */
  readonly #withObserver: boolean;
  readonly #logger: Logger;

  constructor(middlewares: readonly Middleware[], logger: Logger) {
    this.#logger = logger;
    middlewares.forEach((middleware, index) => {
      const name = middleware.name ?? `middlewares[${index}]`;
      if (middleware.consume !== undefined) this.#consume.push({ name, hook: middleware.consume.bind(middleware) });
      if (middleware.publish !== undefined) this.#publish.push({ name, hook: middleware.publish.bind(middleware) });
      if (middleware.stat !== undefined) this.#stat.push({ name, hook: middleware.stat.bind(middleware) });
    });
    const withConsume = middlewares.filter((middleware) => middleware.consume !== undefined);
    const observers = withConsume.map(consumeObserverOf).filter((observer) => observer !== undefined);
    this.#observers = observers.length > 0 && observers.length === withConsume.length ? observers : undefined;
    this.#withObserver = observers.length > 0;
  }

  /**
   * True when there are consume middlewares and all of them are txoutbox's own: deliveries may then
   * go through `observe` instead of `consume` (same spans and metrics, without the onion chain).
   */
  get observed(): boolean {
    return this.#observers !== undefined;
  }

  /** True when some middleware has a consume hook: without one, deliveries skip the chain (and its context). */
  get hasConsume(): boolean {
    return this.#consume.length > 0;
  }

  /** True when some middleware has a publish hook. */
  get hasPublish(): boolean {
    return this.#publish.length > 0;
  }

  /** True when some middleware receives custom stats. */
  get hasStatSinks(): boolean {
    return this.#stat.length > 0;
  }

  /**
   * Runs the consume hooks around `inner` (decode, handler, decision). Never rejects. The handler's
   * own result stands even if a middleware swallowed its failure; a middleware that throws, or
   * never calls next(), fails the delivery through `fail` (retry by the ack policy), never an ack.
   */
  async consume(
    ctx: ConsumeContext,
    inner: () => Promise<ConsumeResult>,
    fail: (error: unknown, handlerResult: ConsumeResult | undefined) => ConsumeResult,
  ): Promise<ConsumeResult> {
    if (this.#consume.length === 0) return await inner();
    const { innerRun, chainError } = await run('consume', this.#consume, ctx, inner, this.#logger);
    const result = innerRun === undefined ? undefined : await innerRun;
    let final: ConsumeResult;
    if (chainError === undefined && result !== undefined) final = result;
    else {
      this.#logger.warn(
        { subscriber: ctx.subscriber, queue: ctx.queue, messageId: ctx.messageId, err: errorMessage(chainError) },
        'a consume middleware failed; the delivery counts as failed',
      );
      final = result !== undefined && result.status === 'error' ? result : fail(chainError, result);
    }
    // The observers' `written` counts what is written, not what their `end` saw: a hook outside
    // them that threw after next() made this run's ack a retry (prometheus-seams.test.ts).
    if (this.#withObserver) rememberWrittenResult(ctx, final);
    return final;
  }

  /**
   * `consume` through the middlewares' observers (when `observed`): the same failure rules, the
   * outcome handed to `settle` with what to tell when its write lands. Undefined when the delivery
   * is already over (a synchronous handler's ack handed to the acker); LATER when `inner` handed
   * over a LaterResult (its listener goes on); never rejects.
   */
  observe(
    ctx: ObservedConsume,
    inner: () => ConsumeResult | Promise<ConsumeResult> | LaterResult,
    fail: Fail,
    settle: Settle,
  ): Promise<void> | undefined | typeof LATER {
    if (this.#observers === undefined) throw new Error('MiddlewareChain.observe without observers: check `observed` first');
    return observeConsume(this.#observers, this.#logger, ctx, inner, fail, settle);
  }

  /**
   * Runs the publish hooks around `inner` (the INSERT). Rejects with the insert's error whatever a
   * middleware did with it, or with a middleware's own error: the caller's transaction should then
   * roll back, as for any failed statement.
   */
  async publish(ctx: PublishContext, inner: () => Promise<PublishResult>): Promise<PublishResult> {
    if (this.#publish.length === 0) return await inner();
    const { innerRun, chainError } = await run('publish', this.#publish, ctx, inner, this.#logger);
    if (innerRun === undefined) throw asError(chainError);
    const result = await innerRun;
    if (chainError !== undefined) throw asError(chainError);
    return result;
  }

  /** Hands a custom stat to every middleware that takes them; a throwing sink is logged and skipped. */
  stat(stat: CustomStat): void {
    for (const { name, hook } of this.#stat)
      safeInvoke(this.#logger, `${name}.stat`, () => {
        hook(stat);
      });
  }
}

/** Middlewares may throw anything; callers of publish() get an Error. */
function asError(error: unknown): Error {
  return error instanceof Error ? error : new MiddlewareError('a publish middleware', `threw ${String(error)}`);
}

/** Validates the `middlewares` option. */
export function resolveMiddlewares(value: unknown): Middleware[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    throw new InvalidOptionError({
      option: 'middlewares',
      value,
      expected: 'an array of middlewares ({ consume?, publish?, stat? })',
    });
  }
  return value.map((middleware: unknown, index) => {
    const option = `middlewares[${index}]`;
    if (typeof middleware !== 'object' || middleware === null) {
      throw new InvalidOptionError({ option, value: middleware, expected: 'an object with consume, publish or stat methods' });
    }
    const candidate = middleware as Record<string, unknown>;
    const hooks = ['consume', 'publish', 'stat'].filter((hook) => candidate[hook] !== undefined);
    if (hooks.length === 0) {
      throw new InvalidOptionError({ option, value: middleware, expected: 'an object with consume, publish or stat methods' });
    }
    for (const hook of hooks) {
      if (typeof candidate[hook] !== 'function') {
        throw new InvalidOptionError({ option: `${option}.${hook}`, value: candidate[hook], expected: 'a function' });
      }
    }
    if (candidate.name !== undefined && typeof candidate.name !== 'string') {
      throw new InvalidOptionError({ option: `${option}.name`, value: candidate.name, expected: 'a string' });
    }
    return middleware;
  });
}
