import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  ConstantRetry,
  type ConsumeResult,
  type CustomStat,
  CustomStatConflictError,
  InvalidOptionError,
  type Middleware,
  type OutboxEvent,
} from '../../src/index.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const QUICK_RETRY = { retry: new ConstantRetry({ delayMs: 10, maxAttempts: 5 }) };

/** A middleware that logs its steps into `trace`, tagged with `tag`. */
function tracer(tag: string, trace: string[], results: ConsumeResult[] = []): Middleware {
  return {
    name: tag,
    consume: async (ctx, next) => {
      trace.push(`${tag}:consume:before:${ctx.queue}`);
      results.push(await next());
      trace.push(`${tag}:consume:after`);
    },
    publish: async (ctx, next) => {
      trace.push(`${tag}:publish:before:${ctx.queue}:${ctx.messageCount}`);
      await next();
      trace.push(`${tag}:publish:after`);
    },
  };
}

describe('the middleware seam', () => {
  test('[a, b] runs a around b around the handler and the INSERT', async () => {
    const trace: string[] = [];
    const results: ConsumeResult[] = [];
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'm_order', {
      middlewares: [tracer('a', trace, results), tracer('b', trace)],
    });
    outbox.subscribe(
      'q',
      () => {
        trace.push('handler');
      },
      FAST_POLL,
    );
    outbox.start();
    await inTransaction(db.pool, (c) => outbox.publish(c, 'q', 'x'));
    await log.waitFor('acked');
    assert.deepEqual(trace, [
      'a:publish:before:q:1',
      'b:publish:before:q:1',
      'b:publish:after',
      'a:publish:after',
      'a:consume:before:q',
      'b:consume:before:q',
      'handler',
      'b:consume:after',
      'a:consume:after',
    ]);
    assert.equal(results[0]?.status, 'acked');
    assert.deepEqual(results[0]?.outcome, { kind: 'ack' });
  });

  test('next() reports each status and the outcome txoutbox will write', async () => {
    const results: ConsumeResult[] = [];
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'm_status', {
      middlewares: [tracer('t', [], results)],
    });
    class PaymentDeclined extends Error {}
    outbox.subscribe<{ kind: string }>(
      'q',
      (message, ctx) => {
        if (message.body.kind === 'nack' && message.attemptsCount === 0) ctx.nack({ delayMs: 5 });
        if (message.body.kind === 'reject') ctx.reject('bad order');
        if (message.body.kind === 'throw' && message.attemptsCount === 0) throw new PaymentDeclined('declined');
      },
      { ...FAST_POLL, ...QUICK_RETRY },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'q', [{ kind: 'nack' }]);
    await log.waitFor('nacked_retried');
    await publishCommitted(outbox, db.pool, 'q', [{ kind: 'reject' }, { kind: 'throw' }]);
    await log.waitFor('nacked_terminal');
    await waitFor(() => results.filter((r) => r.status === 'error').length === 1 && log.of('acked').length >= 2);
    const byStatus = (status: string) => results.filter((r) => r.status === status);
    assert.deepEqual(byStatus('nacked')[0]?.outcome, { kind: 'retry', delayMs: 5 });
    assert.deepEqual(byStatus('rejected')[0]?.outcome, { kind: 'terminal', reason: 'rejected' });
    const [thrown] = byStatus('error');
    assert.ok(thrown?.error instanceof PaymentDeclined);
    assert.deepEqual(thrown.outcome, { kind: 'retry', delayMs: 10 });
    assert.ok(byStatus('acked').length >= 2, 'the nacked and the thrown message were acked on their next run');
  });

  test('a handler that calls ctx.ack() and then throws is acked, and next() reports the error it threw', async () => {
    const results: ConsumeResult[] = [];
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'm_ack_throw', {
      middlewares: [tracer('t', [], results)],
    });
    class AfterAck extends Error {}
    outbox.subscribe(
      'q',
      (_message, ctx) => {
        ctx.ack();
        throw new AfterAck('cleanup failed after the ack');
      },
      { ...FAST_POLL, ackPolicy: 'manual' },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'q', ['x']);
    await log.waitFor('acked');
    const [result] = results;
    assert.equal(result?.status, 'error');
    assert.ok(result.error instanceof AfterAck, 'the thrown error, not undefined: metrics and spans label it');
    assert.deepEqual(result.outcome, { kind: 'ack' });
    assert.equal(await remaining(db.pool, 'q', 'm_ack_throw'), 0);
  });

  test('a middleware that throws, swallows a failure or skips next() never acks', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'm_fail', {
      middlewares: [
        {
          name: 'flaky',
          consume: async (ctx, next) => {
            const attempt = ctx.deliveriesCount;
            if (ctx.queue === 'before' && attempt === 1) throw new Error('span exporter down');
            if (ctx.queue === 'skip' && attempt === 1) return;
            await next(); // the result is ignored: a failure must not turn into an ack
            if (ctx.queue === 'after' && attempt === 1) throw new Error('after the handler');
          },
        },
      ],
    });
    const handled: string[] = [];
    outbox.subscribe(
      ['before', 'after', 'swallow', 'skip'],
      (message) => {
        handled.push(`${message.queue}:${message.deliveriesCount}`);
        if (message.queue === 'swallow' && message.deliveriesCount === 1) throw new Error('handler failed');
      },
      { ...FAST_POLL, ...QUICK_RETRY },
    );
    outbox.start();
    for (const queue of ['before', 'after', 'swallow', 'skip']) await publishCommitted(outbox, db.pool, queue, ['x']);
    await log.waitFor('acked', 4);
    const retried = log.of('nacked_retried').map((e) => e.queue);
    assert.deepEqual([...retried].sort(), ['after', 'before', 'skip', 'swallow']);
    assert.ok(!handled.includes('before:1'), 'a middleware that throws before next() runs no handler');
    assert.ok(!handled.includes('skip:1'), 'a middleware that skips next() runs no handler');
    assert.ok(handled.includes('after:1') && handled.includes('after:2'), 'a failure after the handler retries it');
    assert.equal(log.of('acked').length, 4);
    assert.ok(newOutbox.logger.messages('warn').includes('a consume middleware failed; the delivery counts as failed'));
    for (const queue of ['before', 'after', 'swallow', 'skip']) assert.equal(await remaining(db.pool, queue, 'm_fail'), 0);
  });

  test('a throwing recorder and a throwing stat sink never break delivery', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'm_recorder', {
      middlewares: [
        {
          stat: () => {
            throw new Error('sink down');
          },
        },
      ],
    });
    const throwing = newOutbox({
      pool: db.pool,
      table: 'm_recorder',
      recorder: [
        () => {
          throw new Error('recorder down');
        },
        log.recorder,
      ],
      middlewares: [
        {
          stat: () => {
            throw new Error('sink down');
          },
        },
      ],
    });
    await outbox.stop();
    throwing.subscribe(
      'q',
      (_message, ctx) => {
        ctx.stats.incr('handled');
      },
      FAST_POLL,
    );
    throwing.start();
    await publishCommitted(throwing, db.pool, 'q', [1, 2, 3]);
    await log.waitFor('acked', 3);
    assert.equal(await remaining(db.pool, 'q', 'm_recorder'), 0);
    assert.ok(newOutbox.logger.entries.some((e) => e.level === 'debug' && e.message === 'recorder threw; ignored'));
  });
});

describe('publish through the seam', () => {
  test('published events report rows inserted: single, timer conflict, batch, bad body, failed INSERT', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'm_published');
    await inTransaction(db.pool, async (c) => {
      await outbox.publish(c, 'q', { a: 1 }, { timerId: 't1' });
      await outbox.publish(c, 'q', { a: 1 }, { timerId: 't1' });
      await outbox.publishBatch(c, 'q', ['x', 'yy', 'zzz']);
    });
    await assert.rejects(
      inTransaction(db.pool, (c) => outbox.publish(c, 'q', { n: 1n })),
      (error: Error) => error.name === 'UnencodableBodyError',
    );
    await assert.rejects(
      inTransaction(db.pool, async (c) => {
        await c.query('ALTER TABLE m_published RENAME TO m_published_gone');
        return await outbox.publish(c, 'q', 'lost');
      }),
    );
    const published = log.of('published').map(({ durationSeconds, ...rest }) => {
      assert.ok(durationSeconds >= 0);
      return rest;
    });
    // A failed call inserted nothing; messageCount is what it tried to publish.
    const failed = (exceptionType: string) => ({
      type: 'published',
      queue: 'q',
      status: 'error',
      count: 0,
      messageCount: 1,
      sizeBytes: 0,
      exceptionType,
    });
    assert.deepEqual(published, [
      { type: 'published', queue: 'q', status: 'ok', count: 1, messageCount: 1, sizeBytes: 7 },
      { type: 'published', queue: 'q', status: 'ok', count: 0, messageCount: 1, sizeBytes: 7 },
      { type: 'published', queue: 'q', status: 'ok', count: 3, messageCount: 3, sizeBytes: 6 },
      failed('UnencodableBodyError'),
      failed('SchemaNotMigratedError'),
    ]);
  });

  test('a publish middleware injects headers into every row, never over the envelope', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'm_inject', {
      middlewares: [
        {
          publish: async (ctx, next) => {
            ctx.headers.traceparent = `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`;
            ctx.headers['content-type'] = 'text/evil';
            ctx.headers['correlation-id'] = 'stolen';
            ctx.headers.tenant = 'from-middleware';
            await next();
          },
        },
      ],
    });
    await inTransaction(db.pool, async (c) => {
      await outbox.publish(c, 'q', { a: 1 }, { correlationId: 'c-1', headers: { tenant: 'caller' } });
      await outbox.publishBatch(c, 'q', ['x', 'y']);
    });
    const rows = await outbox.fetchUnprocessed({ queue: 'q' });
    assert.equal(rows.length, 3);
    for (const row of rows) {
      assert.equal(row.headers.traceparent, `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`);
      assert.equal(row.headers.tenant, 'from-middleware');
      assert.notEqual(row.headers['content-type'], 'text/evil');
      assert.notEqual(row.headers['correlation-id'], 'stolen');
    }
    assert.equal(rows[0]?.headers['correlation-id'], 'c-1');
  });

  test('a publish middleware that throws fails the publish; the caller rolls back and nothing is stored', async () => {
    let swallowed: unknown;
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'm_pubfail', {
      middlewares: [
        {
          publish: async (ctx, next) => {
            if (ctx.queue === 'boom') throw new Error('middleware refused');
            try {
              await next();
            } catch (error) {
              swallowed = error; // cannot hide the INSERT's failure from the caller
            }
          },
        },
      ],
    });
    await assert.rejects(
      inTransaction(db.pool, (c) => outbox.publish(c, 'boom', 'x')),
      /middleware refused/,
    );
    await assert.rejects(
      inTransaction(db.pool, async (c) => {
        await c.query('ALTER TABLE m_pubfail RENAME TO m_pubfail_gone');
        return await outbox.publish(c, 'q', 'x');
      }),
      /m_pubfail/,
    );
    assert.ok(swallowed instanceof Error);
    assert.equal(await remaining(db.pool, 'boom', 'm_pubfail'), 0);
  });

  test('an unencodable body reaches the publish middlewares as a failed publish, before any INSERT', async () => {
    const seen: { queue: string; messageCount: number; error: string }[] = [];
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'm_badbody', {
      middlewares: [
        {
          publish: async (ctx, next) => {
            try {
              await next();
            } catch (error) {
              seen.push({ queue: ctx.queue, messageCount: ctx.messageCount, error: (error as Error).name });
              throw error;
            }
          },
        },
      ],
    });
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    await assert.rejects(
      inTransaction(db.pool, (c) => outbox.publish(c, 'q', { n: 1n })),
      (error: Error) => error.name === 'UnencodableBodyError',
    );
    await assert.rejects(
      inTransaction(db.pool, (c) => outbox.publishBatch(c, 'q', ['ok', cycle])),
      (error: Error) => error.name === 'UnencodableBodyError',
    );
    assert.deepEqual(seen, [
      { queue: 'q', messageCount: 1, error: 'UnencodableBodyError' },
      { queue: 'q', messageCount: 2, error: 'UnencodableBodyError' },
    ]);
    assert.deepEqual(
      log.of('published').map((e) => [e.status, e.count]),
      [
        ['error', 0],
        ['error', 0],
      ],
    );
    assert.equal(await remaining(db.pool, 'q', 'm_badbody'), 0);
  });
});

describe('ctx.stats', () => {
  test('stats reach every sink sanitised; one key as two kinds is a typed error at the call', async () => {
    const stats: CustomStat[] = [];
    const errors: unknown[] = [];
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'm_stats', {
      middlewares: [{ stat: (stat) => stats.push(stat) }],
    });
    outbox.subscribe(
      'q',
      async (_message, ctx) => {
        ctx.stats.incr('db.query');
        ctx.stats.incr('db-query', 2);
        ctx.stats.set('queue depth', 7);
        ctx.stats.observe('lookup', 0.25);
        assert.equal(await ctx.stats.time('work', () => 42), 42);
        for (const misuse of [
          () => {
            ctx.stats.set('db.query', 1);
          }, // counter db_query exports custom_db_query
          () => {
            ctx.stats.set('lookup_seconds', 1);
          }, // the histogram's series
          () => {
            ctx.stats.incr('queue_depth');
          }, // the gauge's name
          () => {
            ctx.stats.incr('x', -1);
          },
          () => {
            ctx.stats.set('', 1);
          },
        ]) {
          try {
            misuse();
          } catch (error) {
            errors.push(error);
          }
        }
      },
      { ...FAST_POLL, name: 'stats-handler' },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'q', ['x']);
    await log.waitFor('acked');
    assert.deepEqual(
      stats.map(({ kind, key, value, subscriber, queue }) => [kind, key, kind === 'duration' ? 'd' : value, subscriber, queue]),
      [
        ['counter', 'db_query', 1, 'stats-handler', 'q'],
        ['counter', 'db_query', 2, 'stats-handler', 'q'],
        ['gauge', 'queue_depth', 7, 'stats-handler', 'q'],
        ['duration', 'lookup', 'd', 'stats-handler', 'q'],
        ['duration', 'work', 'd', 'stats-handler', 'q'],
      ],
    );
    assert.equal(errors.length, 5);
    assert.ok(errors.slice(0, 3).every((e) => e instanceof CustomStatConflictError));
    assert.match(String(errors[0]), /custom_db_query/);
    assert.ok(errors.slice(3).every((e) => e instanceof InvalidOptionError));
  });

  test('distinct keys are capped: new keys beyond customStatsLimit are dropped with one warning', async () => {
    const stats: CustomStat[] = [];
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'm_cap', {
      customStatsLimit: 3,
      middlewares: [{ stat: (stat) => stats.push(stat) }],
    });
    outbox.subscribe(
      'q',
      (message, ctx) => {
        ctx.stats.incr(`order_${String(message.body)}`);
      },
      { ...FAST_POLL, concurrency: 4 },
    );
    outbox.start();
    await publishCommitted(
      outbox,
      db.pool,
      'q',
      Array.from({ length: 10 }, (_, i) => i),
    );
    await log.waitFor('acked', 10);
    assert.equal(new Set(stats.map((s) => s.key)).size, 3);
    assert.equal(newOutbox.logger.entries.filter((e) => e.message.startsWith('custom stat key limit reached')).length, 1);
  });
});

describe('middleware options', () => {
  test('bad middlewares and limits name the option', () => {
    const cases: [unknown, RegExp][] = [
      [{ middlewares: {} }, /^middlewares: expected an array/],
      [{ middlewares: [null] }, /^middlewares\[0\]: expected an object/],
      [{ middlewares: [{}] }, /^middlewares\[0\]: expected an object with consume, publish or stat/],
      [{ middlewares: [{ consume: 'yes' }] }, /^middlewares\[0\]\.consume: expected a function/],
      [{ customStatsLimit: -1 }, /^customStatsLimit: expected an integer >= 0/],
    ];
    for (const [options, message] of cases) {
      assert.throws(
        () => newOutbox({ pool: db.pool, ...(options as object) }),
        (error: Error) => error instanceof InvalidOptionError && message.test(error.message),
      );
    }
  });

  test('events are a typed union the recorder can switch on', () => {
    const seen: OutboxEvent['type'][] = [];
    const recorder = (event: OutboxEvent): void => {
      if (event.type === 'published') seen.push(event.type);
    };
    recorder({ type: 'published', queue: 'q', status: 'ok', count: 1, messageCount: 1, sizeBytes: 1, durationSeconds: 0 });
    assert.deepEqual(seen, ['published']);
  });
});
