/**
 * The consume observer path (src/instrumentation/consume-observer.ts, observed-consume.ts): the
 * same callbacks, in the same order, with the same failure rules, whether MiddlewareChain runs
 * them directly (`observe`) or through the generic onion chain (`consume`) that a user middleware
 * brings. And recorders' `readingOnly`: an event type nobody reads gets no emitter.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  type ConsumeObserver,
  consumeObserverOf,
  type ObservedConsume,
  observingMiddleware,
} from '../../src/instrumentation/consume-observer.js';
import type { OutboxEvent, Recorder } from '../../src/instrumentation/events.js';
import type { ConsumeContext, ConsumeResult, Middleware, OutcomeWrite } from '../../src/instrumentation/middleware.js';
import { MiddlewareChain } from '../../src/instrumentation/middleware-chain.js';
import { LATER, LaterResult, type ResultListener } from '../../src/instrumentation/observed-consume.js';
import { deferredEmit, emitterOf, resolveRecorders } from '../../src/instrumentation/recorders.js';
import { TestLogger } from '../support/test-logger.js';

const ACKED: ConsumeResult = { status: 'acked', error: undefined, durationSeconds: 0.001, outcome: { kind: 'ack' } };
const THREW: ConsumeResult = {
  status: 'error',
  error: new TypeError('handler'),
  durationSeconds: 0.001,
  outcome: { kind: 'retry', delayMs: 10 },
};

interface Faults {
  readonly startThrows?: boolean;
  readonly endThrows?: boolean;
}

/** An observer that writes each call into `trace`; `around` marks what runs inside it. */
function recording(name: string, trace: string[], faults: Faults = {}): ConsumeObserver<string> {
  return {
    start(ctx) {
      trace.push(`${name}:start:${ctx.traceId ?? '-'}`);
      if (faults.startThrows === true) throw new RangeError(`${name} start`);
      ctx.traceId = `${name}-trace`;
      return `${name}-state`;
    },
    around(state, inner) {
      trace.push(`${name}:enter:${state}`);
      try {
        return inner();
      } finally {
        trace.push(`${name}:leave`);
      }
    },
    end(state, ctx, result, thrown) {
      const how = result === undefined ? `thrown ${thrown instanceof Error ? thrown.message : String(thrown)}` : result.status;
      trace.push(`${name}:end:${state}:${how}:${ctx.traceId ?? '-'}`);
      if (faults.endThrows === true) throw new RangeError(`${name} end`);
    },
    written(state, write, result) {
      // The result written, which an observer outside this one may have turned into a failure.
      trace.push(`${name}:written:${state}:${write}:${result?.status ?? '-'}`);
    },
  };
}

function context(): ObservedConsume {
  return {
    subscriber: 's',
    queue: 'q',
    messageId: '1',
    correlationId: 'c',
    headers: {},
    sizeBytes: 3,
    deliveriesCount: 1,
    createdAt: new Date(0),
    traceId: undefined,
  };
}

const failWith = (error: unknown, handlerResult: ConsumeResult | undefined): ConsumeResult => ({
  status: 'error',
  error,
  durationSeconds: handlerResult?.durationSeconds ?? 0,
  outcome: { kind: 'retry', delayMs: 99 },
});

interface Run {
  readonly trace: string[];
  readonly result: ConsumeResult | undefined;
  readonly warnings: string[];
  /** What observe() returned: undefined when the delivery ended synchronously. */
  readonly returned?: 'promise' | 'nothing';
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** One delivery through `chain.consume`, the outcome "written" once it returned. */
async function generic(
  make: (trace: string[]) => Middleware[],
  inner: () => ConsumeResult | Promise<ConsumeResult>,
): Promise<Run> {
  const trace: string[] = [];
  const logger = new TestLogger();
  const chain = new MiddlewareChain(make(trace), logger);
  let onWritten: ((write: OutcomeWrite) => void) | undefined;
  const ctx: ConsumeContext = { ...context(), written: new Promise<OutcomeWrite>((resolve) => (onWritten = resolve)) };
  trace.push('handler:before');
  const result = await chain.consume(
    ctx,
    async () => {
      trace.push('handler');
      return await inner();
    },
    failWith,
  );
  onWritten?.('written');
  await tick();
  return { trace, result, warnings: logger.messages('warn') };
}

/** The same delivery through `chain.observe`. */
async function observed(
  make: (trace: string[]) => Middleware[],
  inner: () => ConsumeResult | Promise<ConsumeResult>,
): Promise<Run> {
  const trace: string[] = [];
  const logger = new TestLogger();
  const chain = new MiddlewareChain(make(trace), logger);
  assert.equal(chain.observed, true);
  let result: ConsumeResult | undefined;
  trace.push('handler:before');
  const returned = chain.observe(
    context(),
    () => {
      trace.push('handler');
      return inner();
    },
    failWith,
    (settled, onWritten) => {
      result = settled;
      onWritten?.('written');
      return undefined;
    },
  );
  await returned;
  await tick();
  return { trace, result, warnings: logger.messages('warn'), returned: returned === undefined ? 'nothing' : 'promise' };
}

function observers(faults: Record<string, Faults> = {}, names: readonly string[] = ['a', 'b', 'c']) {
  return (trace: string[]) => names.map((name) => observingMiddleware(recording(name, trace, faults[name]), { name }));
}

/** The handler line is pushed by the generic inner before its await; the observer path's synchronously. */
function same(a: Run, b: Run): void {
  assert.deepEqual(a.trace, b.trace);
  assert.deepEqual(a.result, b.result);
  assert.deepEqual(a.warnings, b.warnings);
}

describe('consume observers: the same calls through observe() and through the generic chain', () => {
  test('a synchronous ack: each start inside the arounds outside it, end c b a, written c b a; observe() returns nothing', async () => {
    const one = await generic(observers(), () => ACKED);
    const two = await observed(observers(), () => ACKED);
    same(one, two);
    assert.deepEqual(two.trace, [
      'handler:before',
      'a:start:-',
      'a:enter:a-state',
      'b:start:a-trace',
      'b:enter:b-state',
      'c:start:b-trace',
      'c:enter:c-state',
      'handler',
      'c:leave',
      'b:leave',
      'a:leave',
      'c:end:c-state:acked:c-trace',
      'b:end:b-state:acked:c-trace',
      'a:end:a-state:acked:c-trace',
      'c:written:c-state:written:acked',
      'b:written:b-state:written:acked',
      'a:written:a-state:written:acked',
    ]);
    assert.equal(two.result, ACKED);
    assert.equal(two.returned, 'nothing', 'no promise for a synchronous handler');
  });

  test('an asynchronous handler that failed: its own result stands, every observer sees status error', async () => {
    const inner = async () => {
      await tick();
      return THREW;
    };
    const one = await generic(observers(), inner);
    const two = await observed(observers(), inner);
    // The generic chain leaves each around() before the promise settles, as the observer path does.
    same(one, two);
    assert.equal(two.result, THREW);
    assert.equal(two.returned, 'promise');
    assert.ok(two.trace.includes('a:end:a-state:error:c-trace'));
  });

  test("a result that comes later (LaterResult, an async handler's run): heard outside the arounds, the same calls as a promise; observe() returns LATER", async () => {
    const trace: string[] = [];
    const chain = new MiddlewareChain(observers()(trace), new TestLogger());
    let listener: ResultListener | undefined;
    const later = new (class extends LaterResult {
      listen(heard: ResultListener): void {
        trace.push('listen');
        listener = heard;
      }
    })();
    let result: ConsumeResult | undefined;
    trace.push('handler:before');
    const returned = chain.observe(
      context(),
      () => {
        trace.push('handler');
        return later;
      },
      failWith,
      (settled, onWritten) => {
        result = settled;
        onWritten?.('written');
        return undefined;
      },
    );
    assert.equal(returned, LATER);
    assert.deepEqual(trace.slice(-4), ['c:leave', 'b:leave', 'a:leave', 'listen'], 'listened to outside every around');
    assert.equal(listener?.decided(ACKED), undefined, "what settle returned: the listener's caller ends the delivery with it");
    const asPromise = await observed(observers(), async () => {
      await tick();
      return ACKED;
    });
    assert.deepEqual(
      trace.filter((line) => line !== 'listen'),
      asPromise.trace,
    );
    assert.equal(result, ACKED);
  });

  test('a LaterResult whose inner step failed outside the handler: threw() ends the observers with the error and fails the delivery', () => {
    const trace: string[] = [];
    const chain = new MiddlewareChain(observers()(trace), new TestLogger());
    let listener: ResultListener | undefined;
    let result: ConsumeResult | undefined;
    const returned = chain.observe(
      context(),
      () =>
        new (class extends LaterResult {
          listen(heard: ResultListener): void {
            listener = heard;
          }
        })(),
      failWith,
      (settled) => {
        result = settled;
        return undefined;
      },
    );
    assert.equal(returned, LATER);
    assert.equal(listener?.threw(new Error('logger down')), undefined);
    assert.ok(trace.includes('a:end:a-state:thrown logger down:c-trace'));
    assert.equal(result?.status, 'error');
    assert.deepEqual(result?.outcome, { kind: 'retry', delayMs: 99 });
  });

  test('an around that throws on the way out after the inner step handed over a LaterResult: not listened to; the delivery fails now', () => {
    const trace: string[] = [];
    const throwingAround = observingMiddleware(
      {
        start: () => 'x',
        around(_state, inner) {
          inner();
          throw new RangeError('context manager');
        },
        end(_state, _ctx, endResult, thrown) {
          trace.push(`x:end:${endResult === undefined ? String(thrown) : endResult.status}`);
        },
      },
      { name: 'x' },
    );
    const chain = new MiddlewareChain([throwingAround], new TestLogger());
    let listened = false;
    let result: ConsumeResult | undefined;
    const returned = chain.observe(
      context(),
      () =>
        new (class extends LaterResult {
          listen(): void {
            listened = true;
          }
        })(),
      failWith,
      (settled) => {
        result = settled;
        return undefined;
      },
    );
    assert.equal(returned, undefined, 'ended now, not LATER');
    assert.equal(listened, false);
    assert.deepEqual(trace, ['x:end:RangeError: context manager']);
    assert.equal(result?.status, 'error');
  });

  test('an observer whose start throws: the ones inside never start, the ones outside end with its error, the delivery fails', async () => {
    // Of three observers and of two (the innermost then; two is a literal-sized state array).
    for (const names of [
      ['a', 'b', 'c'],
      ['a', 'b'],
    ]) {
      const faults = { b: { startThrows: true } };
      const one = await generic(observers(faults, names), () => ACKED);
      const two = await observed(observers(faults, names), () => ACKED);
      same(one, two);
      assert.deepEqual(two.trace, [
        'handler:before',
        'a:start:-',
        'a:enter:a-state',
        'b:start:a-trace',
        'a:leave',
        'a:end:a-state:thrown b start:a-trace',
        'a:written:a-state:written:error',
      ]);
      assert.equal(two.result?.status, 'error');
      assert.deepEqual(two.result?.outcome, { kind: 'retry', delayMs: 99 }, 'failed through fail(): never an ack');
      assert.deepEqual(two.warnings, ['a consume middleware failed; the delivery counts as failed']);
    }
  });

  test('the outermost observer throws in start, alone or with one inside it: nothing started, nothing ended or told', async () => {
    // One and two observers are the state array's literal sizes (observed-consume.ts notStarted).
    for (const names of [['a'], ['a', 'b']]) {
      const faults = { a: { startThrows: true } };
      const one = await generic(observers(faults, names), () => ACKED);
      const two = await observed(observers(faults, names), () => ACKED);
      same(one, two);
      assert.deepEqual(two.trace, ['handler:before', 'a:start:-'], `${names.join(', ')}: no end, no written`);
      assert.equal(two.result?.status, 'error');
      assert.deepEqual(two.result?.outcome, { kind: 'retry', delayMs: 99 });
    }
  });

  test('an observer whose end throws after an ack: the ones outside see its error and the delivery fails', async () => {
    const faults = { c: { endThrows: true } };
    const one = await generic(observers(faults), () => ACKED);
    const two = await observed(observers(faults), () => ACKED);
    same(one, two);
    assert.ok(two.trace.includes('c:end:c-state:acked:c-trace'));
    assert.ok(two.trace.includes('b:end:b-state:thrown c end:c-trace'));
    assert.ok(two.trace.includes('a:end:a-state:thrown c end:c-trace'));
    assert.equal(two.result?.status, 'error');
    assert.deepEqual(two.result?.outcome, { kind: 'retry', delayMs: 99 });
    // What was written is that retry: every observer hears it, c too, which ended with its ack.
    assert.deepEqual(
      two.trace.filter((line) => line.includes(':written:')),
      ['c:written:c-state:written:error', 'b:written:b-state:written:error', 'a:written:a-state:written:error'],
    );
  });

  test('the outermost observer fails an ack in end: the ones inside, which ended with the ack, hear the retry written', async () => {
    const faults = { a: { endThrows: true } };
    const one = await generic(observers(faults), () => ACKED);
    const two = await observed(observers(faults), () => ACKED);
    same(one, two);
    assert.ok(two.trace.includes('c:end:c-state:acked:c-trace'));
    assert.ok(two.trace.includes('b:end:b-state:acked:c-trace'));
    assert.deepEqual(two.result?.outcome, { kind: 'retry', delayMs: 99 });
    assert.deepEqual(
      two.trace.filter((line) => line.includes(':written:')),
      ['c:written:c-state:written:error', 'b:written:b-state:written:error', 'a:written:a-state:written:error'],
    );
  });

  test('a user middleware outside the observers fails an ack after next(): they hear the retry written (generic chain)', async () => {
    const run = await generic(
      (trace) => [
        {
          name: 'user',
          consume: async (_ctx, next) => {
            await next();
            throw new RangeError('user after next');
          },
        },
        ...observers({}, ['a', 'b'])(trace),
      ],
      () => ACKED,
    );
    assert.ok(run.trace.includes('b:end:b-state:acked:b-trace'));
    assert.equal(run.result?.status, 'error');
    assert.deepEqual(
      run.trace.filter((line) => line.includes(':written:')),
      ['b:written:b-state:written:error', 'a:written:a-state:written:error'],
    );
  });

  test('an observer whose end throws after a failed handler: the handler result stands', async () => {
    const faults = { a: { endThrows: true } };
    const one = await generic(observers(faults), () => THREW);
    const two = await observed(observers(faults), () => THREW);
    same(one, two);
    assert.equal(two.result, THREW);
  });

  test('a throwing written callback is logged and the others still hear the write', () => {
    const trace: string[] = [];
    const logger = new TestLogger();
    const loud = recording('a', trace);
    const chain = new MiddlewareChain(
      [
        observingMiddleware(
          {
            ...loud,
            written: () => {
              throw new Error('exporter down');
            },
          },
          { name: 'a' },
        ),
        observingMiddleware(recording('b', trace), { name: 'b' }),
      ],
      logger,
    );
    const returned = chain.observe(
      context(),
      () => ACKED,
      failWith,
      (_result, onWritten) => {
        onWritten?.('lease_lost');
        return undefined;
      },
    );
    assert.equal(returned, undefined);
    assert.ok(trace.includes('b:written:b-state:lease_lost:acked'));
    assert.equal(logger.messages('debug').length, 1);
  });
});

describe('which chains are observed', () => {
  const mine = () => observingMiddleware(recording('mine', []), { name: 'mine' });

  test("only txoutbox's observing middlewares: observed; a user middleware anywhere: the generic chain", () => {
    const user: Middleware = {
      name: 'user',
      consume: async (_ctx, next) => {
        await next();
      },
    };
    const logger = new TestLogger();
    assert.equal(new MiddlewareChain([mine(), mine()], logger).observed, true);
    assert.equal(new MiddlewareChain([mine(), user], logger).observed, false);
    assert.equal(new MiddlewareChain([user, mine()], logger).observed, false);
    assert.equal(new MiddlewareChain([], logger).observed, false);
    // A publish-only or stat-only user middleware does not wrap deliveries.
    assert.equal(
      new MiddlewareChain(
        [
          mine(),
          {
            publish: async (_ctx, next) => {
              await next();
            },
          },
        ],
        logger,
      ).observed,
      true,
    );
  });

  test('a copied middleware, or one whose consume hook was replaced, runs the generic chain', () => {
    const logger = new TestLogger();
    const copied = { ...mine() };
    assert.equal(consumeObserverOf(copied), undefined);
    assert.equal(new MiddlewareChain([copied], logger).observed, false);
    const replaced = mine();
    replaced.consume = async (_ctx, next) => {
      await next();
    };
    assert.equal(consumeObserverOf(replaced), undefined);
    assert.equal(new MiddlewareChain([replaced], logger).observed, false);
  });

  test('observe() without observers is a programming error, said at once', () => {
    const chain = new MiddlewareChain([], new TestLogger());
    assert.throws(
      () =>
        chain.observe(
          context(),
          () => ACKED,
          failWith,
          () => undefined,
        ),
      /without observers/,
    );
  });
});

describe('recorders that read only some events', () => {
  const event: OutboxEvent = { type: 'fetched', queue: 'q', subscriber: 's', count: 1 };
  const only = (...types: OutboxEvent['type'][]): Recorder => Object.assign(() => undefined, { readingOnly: types });

  test('an event type no recorder reads has no emitter; one that some recorder reads has', () => {
    const emit = resolveRecorders([only('fetched'), only('dispatched')], new TestLogger());
    assert.equal(emitterOf(emit, 'acked'), undefined);
    assert.equal(emitterOf(emit, 'fetched'), emit);
    assert.equal(emitterOf(emit, 'dispatched'), emit);
  });

  test('a recorder that declares nothing reads everything; no recorder, no emitter', () => {
    const seen: OutboxEvent[] = [];
    const emit = resolveRecorders([only('fetched'), (e: OutboxEvent) => seen.push(e)], new TestLogger());
    assert.equal(emitterOf(emit, 'acked'), emit);
    emitterOf(emit, 'fetched')?.(event);
    assert.deepEqual(seen, [event]);
    assert.equal(emitterOf(resolveRecorders(undefined, new TestLogger()), 'fetched'), undefined);
  });

  test('a deferred emitter (a row-lock batch buffers its events until COMMIT) reads what its recorders read', () => {
    const buffer: OutboxEvent[] = [];
    const sink = (e: OutboxEvent): void => void buffer.push(e);
    const emit = resolveRecorders([only('fetched')], new TestLogger());
    const deferred = deferredEmit(emit, sink);
    assert.equal(deferred, sink);
    assert.equal(emitterOf(deferred, 'acked'), undefined, 'no acked event is built for the buffer');
    assert.equal(emitterOf(deferred, 'fetched'), sink);
    emitterOf(deferred, 'fetched')?.(event);
    assert.deepEqual(buffer, [event]);
    // A recorder that reads everything: the buffer takes every type; none: no buffer at all.
    const all = deferredEmit(
      resolveRecorders(() => undefined, new TestLogger()),
      (): void => undefined,
    );
    assert.notEqual(emitterOf(all, 'acked'), undefined);
    assert.equal(deferredEmit(undefined, sink), undefined);
  });

  test('prometheusRecorder leaves acked and published to the middleware', async () => {
    const { Registry } = await import('prom-client');
    const { prometheusRecorder } = await import('../../src/prometheus/index.js');
    const emit = resolveRecorders(prometheusRecorder({ registry: new Registry() }), new TestLogger());
    assert.equal(emitterOf(emit, 'acked'), undefined);
    assert.equal(emitterOf(emit, 'published'), undefined);
    for (const type of ['fetched', 'dispatched', 'nacked_retried', 'nacked_terminal', 'lease_lost', 'dlq_written'] as const)
      assert.equal(emitterOf(emit, type), emit, type);
  });
});
