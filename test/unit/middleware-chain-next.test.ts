/**
 * MiddlewareChain (src/instrumentation/middleware-chain.ts): each middleware's next() runs the rest
 * of the chain at most once, and only while its hook runs. A second call, or one after the hook
 * returned, runs nothing (no handler after the outcome was decided, no INSERT outside the caller's
 * flow); it rejects with a MiddlewareError naming the middleware, and the chain logs a warning.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { MiddlewareError } from '../../src/errors.js';
import type {
  ConsumeContext,
  ConsumeResult,
  Middleware,
  OutcomeWrite,
  PublishContext,
  PublishResult,
} from '../../src/instrumentation/middleware.js';
import { MiddlewareChain } from '../../src/instrumentation/middleware-chain.js';
import { TestLogger } from '../support/test-logger.js';

const ACKED: ConsumeResult = { status: 'acked', error: undefined, durationSeconds: 0.001, outcome: { kind: 'ack' } };
const INSERTED: PublishResult = { ids: ['1'], inserted: 1 };

function consumeContext(): ConsumeContext {
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
    written: new Promise<OutcomeWrite>(() => undefined),
  };
}

function publishContext(): PublishContext {
  return { queue: 'q', messageCount: 1, batch: false, sizeBytes: 3, correlationId: undefined, headers: {}, traceId: undefined };
}

const failWith = (error: unknown, handlerResult: ConsumeResult | undefined): ConsumeResult => ({
  status: 'error',
  error,
  durationSeconds: handlerResult?.durationSeconds ?? 0,
  outcome: { kind: 'retry', delayMs: 99 },
});

/** Lets anything a late next() would start (the rest of the chain, the handler) run first. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Counts the calls of the middleware inside the misbehaving one, and of the handler / INSERT. */
interface Counts {
  inner: number;
  handler: number;
}

/** [outer, the middleware under test (unnamed: `middlewares[1]`), inner]. */
function around(misbehaving: Middleware, counts: Counts): Middleware[] {
  return [
    {
      name: 'outer',
      consume: async (_ctx, next) => {
        await next();
      },
      publish: async (_ctx, next) => {
        await next();
      },
    },
    misbehaving,
    {
      name: 'inner',
      consume: async (_ctx, next) => {
        counts.inner++;
        await next();
      },
      publish: async (_ctx, next) => {
        counts.inner++;
        await next();
      },
    },
  ];
}

/** One delivery through around(`misbehaving`), its handler counting its runs and acking. */
async function consumeThrough(misbehaving: Middleware, counts: Counts, logger: TestLogger): Promise<ConsumeResult> {
  const chain = new MiddlewareChain(around(misbehaving, counts), logger);
  return await chain.consume(
    consumeContext(),
    async () => {
      counts.handler++;
      return await Promise.resolve(ACKED);
    },
    failWith,
  );
}

function assertRefused(error: unknown): true {
  assert.ok(error instanceof MiddlewareError, `expected a MiddlewareError, got ${String(error)}`);
  assert.equal(error.code, 'MIDDLEWARE_FAILED');
  assert.equal(error.middleware, 'middlewares[1]');
  return true;
}

// Every assert.ok here has a message: without one, a failing assert.ok makes node's assert parse the
// (tsx-transpiled, one-line) source for the expression, which took over 100 s of CPU here.
function assertWarned(logger: TestLogger, why = ''): void {
  const warned = logger.entries.some((entry) => entry.level === 'warn' && entry.fields.middleware === 'middlewares[1]');
  assert.ok(warned, `no warning naming middlewares[1] was logged ${why}`);
}

describe('MiddlewareChain: next() runs the rest of the chain at most once', () => {
  test('consume: next() called after the hook returned runs no handler, rejects, and is logged', async () => {
    const counts: Counts = { inner: 0, handler: 0 };
    const logger = new TestLogger();
    let lateNext: (() => Promise<ConsumeResult>) | undefined;
    const result = await consumeThrough(
      {
        // Returns at once and calls next() "later", as a setTimeout(next) would.
        consume: async (_ctx, next) => {
          lateNext = next;
          await Promise.resolve();
        },
      },
      counts,
      logger,
    );
    // The delivery already failed: the hook returned without calling next().
    assert.equal(result.status, 'error');
    assert.ok(result.error instanceof MiddlewareError, 'the delivery failed for returning without next()');
    assert.ok(lateNext !== undefined, 'the hook ran');

    const late = lateNext();
    await settle();
    assert.deepEqual(counts, { inner: 0, handler: 0 }, 'the late next() ran the rest of the chain after the outcome was decided');
    await assert.rejects(late, assertRefused);
    assertWarned(logger);
  });

  test('consume: a second next() after the run settled does not run the handler again', async () => {
    const counts: Counts = { inner: 0, handler: 0 };
    const logger = new TestLogger();
    let again: (() => Promise<ConsumeResult>) | undefined;
    const result = await consumeThrough(
      {
        consume: async (_ctx, next) => {
          again = next;
          await next();
        },
      },
      counts,
      logger,
    );
    assert.equal(result.status, 'acked');
    assert.ok(again !== undefined, 'the hook ran');

    const second = again();
    await settle();
    assert.deepEqual(counts, { inner: 1, handler: 1 });
    await assert.rejects(second, assertRefused);
    assertWarned(logger);
  });

  test('consume: a second next() while the hook runs is refused; awaiting it fails the delivery', async () => {
    for (const [how, hook] of [
      [
        'in sequence',
        async (_ctx: ConsumeContext, next: () => Promise<ConsumeResult>) => {
          await next();
          await next();
        },
      ],
      [
        'concurrently',
        async (_ctx: ConsumeContext, next: () => Promise<ConsumeResult>) => {
          await Promise.all([next(), next()]);
        },
      ],
    ] as const) {
      const counts: Counts = { inner: 0, handler: 0 };
      const logger = new TestLogger();
      const result = await consumeThrough({ consume: hook }, counts, logger);
      await settle();
      assert.deepEqual(counts, { inner: 1, handler: 1 }, how);
      // The hook threw the refusal: a failed delivery (retry), never an ack.
      assert.equal(result.status, 'error', how);
      assertRefused(result.error);
      assertWarned(logger, how);
    }
  });

  test('publish: next() called after publish() settled runs no INSERT', async () => {
    // A late first call (the publish already failed), then a second call after a publish that succeeded.
    for (const calledFirst of [false, true]) {
      const counts: Counts = { inner: 0, handler: 0 };
      const logger = new TestLogger();
      let lateNext: (() => Promise<PublishResult>) | undefined;
      const chain = new MiddlewareChain(
        around(
          {
            publish: async (_ctx, next) => {
              lateNext = next;
              if (calledFirst) await next();
            },
          },
          counts,
        ),
        logger,
      );
      const publishing = chain.publish(publishContext(), async () => {
        counts.handler++;
        return await Promise.resolve(INSERTED);
      });
      if (calledFirst) assert.deepEqual(await publishing, INSERTED);
      else await assert.rejects(publishing, MiddlewareError);
      assert.ok(lateNext !== undefined, 'the hook ran');

      const late = lateNext();
      await settle();
      const once = calledFirst ? 1 : 0;
      assert.deepEqual(counts, { inner: once, handler: once }, `called first: ${String(calledFirst)}`);
      await assert.rejects(late, assertRefused);
      assertWarned(logger);
    }
  });

  test('a refused next() that nobody awaits is no unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      const logger = new TestLogger();
      let lateNext: (() => Promise<ConsumeResult>) | undefined;
      const chain = new MiddlewareChain(
        around(
          {
            consume: async (_ctx, next) => {
              lateNext = next;
              await next();
            },
          },
          { inner: 0, handler: 0 },
        ),
        logger,
      );
      await chain.consume(consumeContext(), () => Promise.resolve(ACKED), failWith);
      // Fire and forget, as `setTimeout(() => next())` does: the warning reports it; the process lives on.
      void lateNext?.();
      await settle();
      assert.deepEqual(unhandled, []);
      assertWarned(logger);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
