import { buildHeaders } from '../envelope/build-headers.js';
import { decodeBody } from '../envelope/decode-body.js';
import { encodeBody } from '../envelope/encode-body.js';
import { CORRELATION_ID_HEADER } from '../envelope/headers.js';
import { InvalidOptionError } from '../errors.js';
import { CustomStatKeys, DEFAULT_CUSTOM_STATS_LIMIT } from '../instrumentation/custom-stats.js';
import type { CustomStat } from '../instrumentation/middleware.js';
import { MiddlewareChain } from '../instrumentation/middleware-chain.js';
import { prepareBody, type PublishObservers } from '../producer/prepare-bodies.js';
import { type PublishOptions, resolvePublishOptions, validateQueue } from '../producer/publish-options.js';
import { type Decision, DeliveryControls } from '../subscriber/decision.js';
import { DeliverySignal } from '../subscriber/delivery-signal.js';
import type { PublishFollowUp } from '../subscriber/follow-up.js';
import type { Handler, HandlerContext, Message } from '../subscriber/message.js';
import {
  type HandlerContextOptions,
  type ResolvedHandlerContextOptions,
  resolveHandlerContextOptions,
} from './handler-context-options.js';

/**
 * What a handler run decided, as the real outbox would read it (src/subscriber/decision.ts):
 * `ack`, `nack` (with the delay and error it gave), `reject` (with its reason), or `threw` when
 * it threw without deciding — the ack policy then makes that a nack (retry by the strategy, the
 * default) or a reject (`reject_on_error`). Fields left undefined are left out, so
 * `assert.deepEqual(decision, { kind: 'nack', delayMs: 500 })` holds.
 */
export type TestDecision =
  | { readonly kind: 'ack' }
  | { readonly kind: 'nack'; readonly delayMs?: number; readonly error?: unknown; readonly forgotten?: true }
  | { readonly kind: 'reject'; readonly reason?: string; readonly error?: unknown }
  | { readonly kind: 'threw'; readonly error: unknown };

export type { HandlerContextOptions } from './handler-context-options.js';

/** A follow-up the handler published with ctx.publish(), with the options it went out with (cause included). */
export interface FollowUpRecord {
  readonly queue: string;
  readonly body: unknown;
  /** The handler's options plus `correlationId` and the `causation-id` header of the message handled. */
  readonly options: PublishOptions;
}

export interface TestHandlerContext {
  /** The HandlerContext to hand to the handler: the real one (ack, nack, reject, signal, stats). */
  readonly ctx: HandlerContext;
  /** The decision, once the handler returned: its explicit call, else what the ack policy makes of a return. */
  readonly decision: () => TestDecision;
  /** Every ctx.stats call, sanitised and checked as the real one does. */
  readonly stats: readonly CustomStat[];
  /**
   * Every ctx.publish() call that the real one would have inserted, in order (nothing is inserted
   * anywhere): its options, queue and body are checked, encoded and validated as the real one's,
   * and a refused one rejects as there, unrecorded.
   */
  readonly published: readonly FollowUpRecord[];
}

function clean(decision: Decision, forgotten: boolean): TestDecision {
  switch (decision.kind) {
    case 'ack':
      return { kind: 'ack' };
    case 'nack':
      return {
        kind: 'nack',
        ...(decision.delayMs === undefined ? {} : { delayMs: decision.delayMs }),
        ...(decision.error === undefined ? {} : { error: decision.error }),
        ...(forgotten ? { forgotten: true as const } : {}),
      };
    case 'reject':
      return {
        kind: 'reject',
        ...(decision.reason === undefined ? {} : { reason: decision.reason }),
        ...(decision.error === undefined ? {} : { error: decision.error }),
      };
    default: {
      const unreachable: never = decision;
      throw new Error(`unknown decision ${JSON.stringify(unreachable)}`);
    }
  }
}

/**
 * A real HandlerContext for one handler run, and a way to read what the handler decided:
 *
 * ```ts
 * const { ctx, decision } = createHandlerContext();
 * await handler(testMessage('order.created', { orderId: 1 }), ctx);
 * assert.deepEqual(decision(), { kind: 'nack', delayMs: 500 });
 * ```
 */
export function createHandlerContext(options?: HandlerContextOptions): TestHandlerContext {
  const { ctx, decision, stats, published } = createRun(resolveHandlerContextOptions(options));
  return { ctx, decision, stats, published };
}

interface Run extends TestHandlerContext {
  /** Whether the handler called ack, nack or reject. */
  readonly decided: () => boolean;
  readonly settle: (threw: boolean, error: unknown) => TestDecision;
}

function createRun(options: ResolvedHandlerContextOptions): Run {
  const { logger, subscriber } = options;
  const stats: CustomStat[] = [];
  const keys = new CustomStatKeys(DEFAULT_CUSTOM_STATS_LIMIT, logger, (stat) => stats.push(stat));
  const signal = new DeliverySignal();
  if (options.signal !== undefined) {
    const abort = options.signal;
    if (abort.aborted) signal.abort(abort.reason);
    else
      abort.addEventListener(
        'abort',
        () => {
          signal.abort(abort.reason);
        },
        { once: true },
      );
  }
  const message = options.message;
  const lease = {
    record: {
      id: message?.id ?? '0',
      queue: message?.queue ?? 'test',
      payload: message?.payload ?? Buffer.alloc(0),
      headers: { ...message?.headers },
      created_at: message?.createdAt ?? new Date(0),
      deliveries_count: message?.deliveriesCount ?? 1,
      attempts_count: message?.attemptsCount ?? 0,
      first_attempt_at: null,
      timer_id: message?.timerId ?? null,
      last_exception_type: null,
      ordering_key: message?.orderingKey ?? null,
    },
    token: '',
    leasedAt: 0,
  };
  const published: FollowUpRecord[] = [];
  const observers: PublishObservers = {
    middlewares: new MiddlewareChain([], logger),
    emit: undefined,
    schemas: options.schemas,
  };
  const followUp = recordingFollowUp(observers, published);
  const controls = new DeliveryControls(
    options.ackPolicy,
    signal,
    subscriber,
    // The stats of a real delivery name its row's queue.
    keys.forDelivery(subscriber, lease.record.queue),
    logger,
    lease,
    followUp,
  );
  // The real controls, seen through a proxy only to note that the handler decided explicitly:
  // runHandler tells a throw after ctx.nack() from a bare throw, which the settled decision
  // alone cannot. Every other field is the real one's.
  let decided = false;
  const ctx = new Proxy(controls, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if ((property === 'ack' || property === 'nack' || property === 'reject') && typeof value === 'function') {
        return (...args: unknown[]) => {
          const result: unknown = (value as (...a: unknown[]) => unknown)(...args);
          decided = true;
          return result;
        };
      }
      return value;
    },
  }) as HandlerContext;
  return {
    ctx,
    published,
    decided: () => decided,
    settle: (threw, error) => {
      const { decision, forgotten } = controls.settle(threw, error);
      return clean(decision, forgotten);
    },
    decision: () => {
      const { decision, forgotten } = controls.settle(false, undefined);
      return clean(decision, forgotten);
    },
    stats,
  };
}

/**
 * ctx.publish as the Outbox wires it (outbox.ts followUp, then producer/publish.ts) with the real
 * functions, up to the insert, which is recorded instead: outside a delivery transaction a
 * follow-up goes out on its own (autocommit), its options resolved, its queue checked, its body
 * validated by the queue's schema and encoded. Before, any call "succeeded": a body PostgreSQL
 * would never see (10n, a function) passed the handler's unit test and failed in production.
 */
function recordingFollowUp(observers: PublishObservers, published: FollowUpRecord[]): PublishFollowUp {
  return async (_client, queue, body, publishOptions) => {
    const resolved = resolvePublishOptions({ ...publishOptions, autocommit: true }, false);
    const validQueue = validateQueue(queue);
    await prepareBody(observers, validQueue, body, resolved);
    published.push({ queue: validQueue, body, options: publishOptions });
    return String(published.length);
  };
}

/**
 * Runs `handler` on `message` with a fresh context and returns its decision, `{ kind: 'threw',
 * error }` when it threw without deciding:
 *
 * ```ts
 * assert.deepEqual(await runHandler(handler, testMessage('q', body)), { kind: 'ack' });
 * ```
 */
export async function runHandler<T>(
  handler: Handler<T>,
  message: Message<T>,
  options?: HandlerContextOptions,
): Promise<TestDecision> {
  if (typeof handler !== 'function') {
    throw new InvalidOptionError({ option: 'handler', value: handler, expected: 'a function (message, ctx) => Promise<void>' });
  }
  const context = createRun(resolveHandlerContextOptions(options, message));
  try {
    await handler(message, context.ctx);
  } catch (error) {
    // An explicit decision wins over the throw, as in the real outbox; without one, say it threw.
    const decision = context.settle(true, error);
    return context.decided() ? decision : { kind: 'threw', error };
  }
  return context.settle(false, undefined);
}

/**
 * A Message as a handler receives it: the body encoded and decoded as a real row's would be (a
 * Date becomes its ISO string, a string stays text, a Buffer stays bytes), the envelope's
 * content-type and correlation-id headers, first delivery. `overrides` replaces any field.
 */
export function testMessage<T = unknown>(queue: string, body: T, overrides: Partial<Message<T>> = {}): Message<T> {
  const { payload, contentType } = encodeBody(body);
  const headers = buildHeaders({ headers: overrides.headers ?? {}, contentType, correlationId: overrides.correlationId });
  return {
    id: '1',
    queue,
    body: decodeBody(payload, headers) as T,
    payload,
    createdAt: new Date(),
    deliveriesCount: 1,
    attemptsCount: 0,
    timerId: null,
    orderingKey: null,
    ...overrides,
    // Your headers join the envelope's (content type, correlation id) instead of replacing them.
    headers,
    correlationId: headers[CORRELATION_ID_HEADER] ?? '1',
  };
}
