import assert from 'node:assert/strict';
import { test } from 'node:test';

import { z } from 'zod';

import {
  ConstantRetry,
  ExponentialRetry,
  InvalidBodyError,
  InvalidOptionError,
  type Middleware,
  NotInTransactionError,
  type Outbox,
  OutboxStoppedError,
} from '../../src/index.js';
import { createTestOutbox, DrainLimitError } from '../../src/testing/index.js';
import { TestLogger } from '../support/test-logger.js';

const quiet = () => ({ logger: new TestLogger(), now: new Date('2030-01-01T00:00:00.000Z') });

test('committed = delivered, rolled back = never delivered, with either transaction form', async () => {
  const outbox = createTestOutbox(quiet());
  const seen: unknown[] = [];
  outbox.subscribe('q', (m) => {
    seen.push(m.body);
  });
  outbox.start();
  const tx = outbox.transaction();
  await outbox.publish(tx, 'q', 'committed');
  assert.deepEqual(await outbox.fetchUnprocessed(), [], 'invisible before commit');
  assert.equal((await outbox.fetchUnprocessed(tx)).length, 1, 'visible to its own transaction');
  await tx.commit();
  const rolledBack = outbox.transaction();
  await outbox.publish(rolledBack, 'q', 'rolled back');
  await rolledBack.rollback();
  await assert.rejects(
    outbox.transaction(async (t) => {
      await outbox.publish(t, 'q', 'thrown');
      throw new Error('domain write failed');
    }),
    /domain write failed/,
  );
  await outbox.transaction((t) => outbox.publishBatch(t, 'q', ['b1', 'b2']));
  assert.deepEqual(await outbox.drain(), { delivered: 3, now: outbox.clock.now() });
  assert.deepEqual(seen, ['committed', 'b1', 'b2']);
  assert.deepEqual(
    outbox.published.map((p) => p.body),
    ['committed', 'b1', 'b2'],
  );
  assert.deepEqual(await outbox.fetchUnprocessed(), []);
});

test('publishing outside a transaction of the outbox is NotInTransactionError, as on PostgreSQL', async () => {
  const outbox = createTestOutbox(quiet());
  await assert.rejects(
    outbox.publish({ query: () => Promise.resolve({ rows: [], rowCount: 0 }) }, 'q', 1),
    NotInTransactionError,
  );
  const tx = outbox.transaction();
  await tx.commit();
  await assert.rejects(outbox.publish(tx, 'q', 1), NotInTransactionError);
  assert.notEqual(await outbox.publish(tx, 'q', 1, { autocommit: true }), null, 'autocommit: a row of its own');
  await assert.rejects(createTestOutbox(quiet()).publish(outbox.transaction(), 'q', 1), NotInTransactionError);
  await assert.rejects(tx.commit(), NotInTransactionError);
  // cancelTimer likewise.
  await assert.rejects(outbox.cancelTimer(tx, 'q', 't'), NotInTransactionError);
  assert.equal(await outbox.cancelTimer(tx, 'q', 't', { autocommit: true }), false);
});

test('retries follow the real strategy on the test clock; the DLQ row is what dlq.get() returns', async () => {
  const outbox = createTestOutbox(quiet());
  const attempts: number[] = [];
  outbox.subscribe(
    'q',
    (m) => {
      attempts.push(m.attemptsCount);
      throw new TypeError(`failure ${m.attemptsCount}`);
    },
    { name: 'failing', retry: new ExponentialRetry({ initialDelayMs: 1000, maxAttempts: 4 }) },
  );
  await outbox.transaction((tx) => outbox.publish(tx, 'q', { n: 1 }, { headers: { tenant: 't1' } }));
  assert.equal((await outbox.drain()).delivered, 1, 'only the first run is due');
  outbox.clock.advance(999);
  assert.equal((await outbox.drain()).delivered, 0, 'the retry is not due 1 ms early');
  outbox.clock.advance(1);
  assert.equal((await outbox.drain()).delivered, 1);
  await outbox.drain({ advanceClock: true });
  assert.deepEqual(attempts, [0, 1, 2, 3]);
  assert.deepEqual(
    outbox.retried.map((r) => [r.attempt, r.delayMs, r.exceptionType]),
    [
      [1, 1000, 'TypeError'],
      [2, 2000, 'TypeError'],
      [3, 4000, 'TypeError'],
    ],
  );
  const [dead] = outbox.deadLetters;
  assert.equal(dead?.failureReason, 'retry_terminal');
  assert.equal(dead?.attemptsCount, 4);
  assert.equal(dead?.deliveriesCount, 4);
  assert.match(dead?.lastException ?? '', /^TypeError: failure 3\n/);
  assert.equal(dead?.lastExceptionType, 'TypeError');
  assert.deepEqual(dead?.body, { n: 1 });
  assert.equal(dead?.headers.tenant, 't1');
  assert.equal(dead?.firstAttemptAt?.getTime(), new Date('2030-01-01T00:00:00.000Z').getTime());
  assert.equal(dead?.lastAttemptAt?.getTime(), new Date('2030-01-01T00:00:07.000Z').getTime());
  assert.deepEqual(
    outbox.events.filter((e) => e.type !== 'fetched').map((e) => e.type),
    [
      'published',
      ...['dispatched', 'nacked_retried', 'dispatched', 'nacked_retried', 'dispatched', 'nacked_retried'],
      ...['dispatched', 'nacked_terminal', 'dlq_written'],
    ],
  );
});

test('per-key ordering: a key runs one row at a time, a retried row keeps its place, other keys pass', async () => {
  const outbox = createTestOutbox(quiet());
  const runs: string[] = [];
  let failedOnce = false;
  outbox.subscribe(
    'q',
    (m) => {
      const body = m.body as string;
      runs.push(body);
      if (body === 'a1' && !failedOnce) {
        failedOnce = true;
        throw new Error('a1 fails once');
      }
    },
    { retry: new ConstantRetry({ delayMs: 100 }) },
  );
  await outbox.transaction(async (tx) => {
    await outbox.publish(tx, 'q', 'a1', { orderingKey: 'a' });
    await outbox.publish(tx, 'q', 'b1', { orderingKey: 'b' });
    await outbox.publish(tx, 'q', 'a2', { orderingKey: 'a' });
    await outbox.publish(tx, 'q', 'free');
  });
  await outbox.drain();
  assert.deepEqual(runs, ['a1', 'b1', 'free'], 'a2 waits behind the retried a1');
  await outbox.drain({ advanceClock: true });
  assert.deepEqual(runs, ['a1', 'b1', 'free', 'a1', 'a2']);
});

test('timers: one live row per timerId, cancelled before it fires, not once it runs', async () => {
  const outbox = createTestOutbox(quiet());
  const fired: unknown[] = [];
  let cancelWhileRunning: boolean | undefined;
  outbox.subscribe('reminders', async (m) => {
    fired.push(m.body);
    cancelWhileRunning = await outbox.transaction((tx) => outbox.cancelTimer(tx, 'reminders', 'r2'));
  });
  const first = await outbox.transaction((tx) => outbox.publish(tx, 'reminders', 'r1', { timerId: 'r1', activateInMs: 60_000 }));
  assert.notEqual(first, null);
  assert.equal(await outbox.transaction((tx) => outbox.publish(tx, 'reminders', 'again', { timerId: 'r1' })), null);
  assert.equal(await outbox.transaction((tx) => outbox.cancelTimer(tx, 'reminders', 'r1')), true);
  assert.equal(await outbox.transaction((tx) => outbox.cancelTimer(tx, 'reminders', 'r1')), false);
  const rolledBack = outbox.transaction();
  assert.notEqual(
    await outbox.publish(rolledBack, 'reminders', 'r1 again', { timerId: 'r1' }),
    null,
    'free again once cancelled',
  );
  await rolledBack.rollback();
  await outbox.transaction((tx) => outbox.publish(tx, 'reminders', 'r2', { timerId: 'r2', activateInMs: 1000 }));
  assert.equal((await outbox.drain()).delivered, 0, 'not due yet');
  await outbox.drain({ advanceClock: true });
  assert.deepEqual(fired, ['r2']);
  assert.equal(cancelWhileRunning, false, 'a running timer cannot be cancelled');
  assert.equal(outbox.clock.now().toISOString(), '2030-01-01T00:00:01.000Z');
});

test('maxDeliveries ends the row without running the handler, as max_deliveries', async () => {
  const outbox = createTestOutbox(quiet());
  let runs = 0;
  outbox.subscribe(
    'q',
    () => {
      runs += 1;
      throw new Error('boom');
    },
    { maxDeliveries: 2, retry: new ConstantRetry({ delayMs: 10 }) },
  );
  await outbox.transaction((tx) => outbox.publish(tx, 'q', 1));
  await outbox.drain({ advanceClock: true });
  assert.equal(runs, 2);
  const [dead] = outbox.deadLetters;
  assert.equal(dead?.failureReason, 'max_deliveries');
  assert.equal(dead?.deliveriesCount, 3);
  assert.equal(dead?.attemptsCount, 2);
  assert.match(dead?.lastException ?? '', /^Error: boom/);
});

test('a handler that keeps publishing into its own queue stops the drain with DrainLimitError', async () => {
  const outbox = createTestOutbox({ ...quiet(), maxDrainSteps: 50 });
  outbox.subscribe('loop', (m) =>
    outbox.transaction((tx) => outbox.publish(tx, 'loop', (m.body as number) + 1)).then(() => undefined),
  );
  await outbox.transaction((tx) => outbox.publish(tx, 'loop', 0));
  const error = await outbox.drain().then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(error instanceof DrainLimitError);
  assert.equal(error.maxSteps, 50);
  assert.equal(error.pending, 1);
  assert.equal(error.code, 'DRAIN_LIMIT');
});

test('middlewares run in the real order around publish and consume; recorders see every event', async () => {
  const order: string[] = [];
  const recorded: string[] = [];
  const named = (name: string): Middleware => ({
    name,
    async consume(_ctx, next) {
      order.push(`${name}:consume:before`);
      const result = await next();
      order.push(`${name}:consume:after:${result.status}`);
    },
    async publish(ctx, next) {
      order.push(`${name}:publish:before`);
      ctx.headers[`x-${name}`] = 'seen';
      await next();
      order.push(`${name}:publish:after`);
    },
  });
  const outbox = createTestOutbox({
    ...quiet(),
    middlewares: [named('outer'), named('inner')],
    recorder: (e) => recorded.push(e.type),
  });
  outbox.subscribe('q', (m) => {
    order.push(`handler:${m.headers['x-outer']}`);
  });
  await outbox.transaction((tx) => outbox.publish(tx, 'q', 1));
  await outbox.drain();
  assert.deepEqual(order, [
    'outer:publish:before',
    'inner:publish:before',
    'inner:publish:after',
    'outer:publish:after',
    'outer:consume:before',
    'inner:consume:before',
    'handler:seen',
    'inner:consume:after:acked',
    'outer:consume:after:acked',
  ]);
  assert.deepEqual(recorded, ['published', 'fetched', 'dispatched', 'acked']);
  assert.deepEqual(
    outbox.events.map((e) => e.type),
    recorded,
  );
});

test('ctx.publish: follow-ups carry the cause; in a transactional subscription they commit only with the ack', async () => {
  const outbox = createTestOutbox(quiet());
  let failFirst = true;
  outbox.subscribe(
    'order.created',
    async (_m, ctx) => {
      await ctx.publish('invoice.requested', { attempt: failFirst ? 1 : 2 });
      if (failFirst) {
        failFirst = false;
        throw new Error('after the follow-up');
      }
    },
    { transactional: true, retry: new ConstantRetry({ delayMs: 5 }) },
  );
  const followUps: unknown[] = [];
  outbox.subscribe('invoice.requested', (m) => {
    followUps.push([m.body, m.headers['causation-id'], m.correlationId]);
  });
  const id = await outbox.transaction((tx) => outbox.publish(tx, 'order.created', { orderId: 1 }, { correlationId: 'conv' }));
  await outbox.drain({ advanceClock: true });
  assert.deepEqual(followUps, [[{ attempt: 2 }, id, 'conv']], 'the failed run published nothing');
});

test("transactional: ctx.client is the delivery's transaction: publish(ctx.client, …) commits with the ack, and it runs no SQL", async () => {
  const outbox = createTestOutbox(quiet());
  let failFirst = true;
  const queried: unknown[] = [];
  outbox.subscribe(
    'order.created',
    async (_m, ctx) => {
      await outbox.publish(ctx.client, 'invoice.requested', { attempt: failFirst ? 1 : 2 });
      queried.push(await ctx.client.query('SELECT 1').then(String, (error: unknown) => error?.constructor.name));
      if (failFirst) {
        failFirst = false;
        throw new Error('after the publish');
      }
    },
    { transactional: true, retry: new ConstantRetry({ delayMs: 5 }) },
  );
  const followUps: unknown[] = [];
  outbox.subscribe('invoice.requested', (m) => {
    followUps.push(m.body);
  });
  await outbox.transaction((tx) => outbox.publish(tx, 'order.created', { orderId: 1 }));
  await outbox.drain({ advanceClock: true });
  assert.deepEqual(followUps, [{ attempt: 2 }], 'the failed run published nothing');
  assert.deepEqual(queried, ['NotInTransactionError', 'NotInTransactionError']);
});

test('stop(): producer calls, subscribe and drain throw OutboxStoppedError', async () => {
  const outbox = createTestOutbox(quiet());
  const tx = outbox.transaction();
  await outbox.stop();
  await assert.rejects(outbox.publish(tx, 'q', 1), OutboxStoppedError);
  await assert.rejects(outbox.drain(), OutboxStoppedError);
  assert.throws(() => outbox.subscribe('q', () => undefined), OutboxStoppedError);
});

test('options are validated as the real Outbox validates them', () => {
  assert.throws(() => createTestOutbox({ recorder: 'nope' as never }), /recorder: expected a function/);
  assert.throws(() => createTestOutbox({ middlewares: [{}] as never }), /middlewares\[0\]/);
  assert.throws(
    () => createTestOutbox({ connectionString: 'postgres://x' } as never),
    /connectionString: expected one of the createTestOutbox options/,
  );
  assert.throws(() => createTestOutbox(quiet()).subscribe('q', () => undefined, { concurrency: 0 }), /concurrency/);
  assert.throws(() => {
    createTestOutbox(quiet()).clock.advance(-1);
  }, /clock\.advance/);
  // Past a Date's range every time the outbox reports was an Invalid Date (reported in review).
  assert.throws(() => createTestOutbox({ ...quiet(), now: 8.64e15 + 1 }), /clock: expected a valid Date/);
  assert.throws(() => {
    createTestOutbox(quiet()).clock.advance(Number.MAX_VALUE);
  }, /clock\.advance\(ms\): expected a number of milliseconds >= 0 that keeps the clock within a Date's range/);
});

test('typed: the queue map and schemas of the real Outbox; an invalid body is refused before any insert', async () => {
  const schemas = { 'order.created': z.object({ orderId: z.string(), qty: z.number().int().positive() }) };
  const outbox = createTestOutbox({ ...quiet(), schemas });
  const bodies: { orderId: string; qty: number }[] = [];
  outbox.subscribe('order.created', (m) => {
    bodies.push(m.body);
  });
  await assert.rejects(
    outbox.transaction((tx) => outbox.publish(tx, 'order.created', { orderId: 'o-1', qty: 0 })),
    (error: unknown) => error instanceof InvalidBodyError && error.issues[0]?.path === 'qty',
  );
  await outbox.transaction((tx) => outbox.publish(tx, 'order.created', { orderId: 'o-2', qty: 2 }));
  await outbox.drain();
  assert.deepEqual(bodies, [{ orderId: 'o-2', qty: 2 }]);
  assert.deepEqual(
    outbox.events.filter((e) => e.type === 'published').map((e) => e.type === 'published' && e.status),
    ['error', 'ok'],
  );
  const tx = outbox.transaction();
  // Compile-time only (never called): a queue the map does not name is refused by the type checker.
  // @ts-expect-error: not a queue of the map
  const wrongQueue = () => outbox.publish(tx, 'order.cancelled', { orderId: 'o-3', qty: 1 });
  assert.equal(typeof wrongQueue, 'function');
  // The typed test outbox fits where code expects the real typed Outbox's publish.
  const publisher: Pick<Outbox<{ 'order.created': { orderId: string; qty: number } }>, 'publish'> = outbox;
  assert.equal(typeof publisher.publish, 'function');
  await tx.rollback();
});

test('a row an open transaction is cancelling is skipped by drain (SKIP LOCKED); its rollback gives it back', async () => {
  const outbox = createTestOutbox(quiet());
  const fired: unknown[] = [];
  outbox.subscribe('reminders', (m) => {
    fired.push(m.body);
  });
  await outbox.transaction((tx) => outbox.publish(tx, 'reminders', 'r1', { timerId: 'r1' }));
  const cancelling = outbox.transaction();
  assert.equal(await outbox.cancelTimer(cancelling, 'reminders', 'r1'), true);
  assert.equal((await outbox.drain()).delivered, 0);
  await cancelling.rollback();
  await outbox.drain();
  assert.deepEqual(fired, ['r1']);
});

test("a keyed row waits for its key's delayed timer; cancelling the timer makes it due at once", async () => {
  const outbox = createTestOutbox(quiet());
  const fired: unknown[] = [];
  outbox.subscribe('account', (m) => {
    fired.push(m.body);
  });
  await outbox.transaction(async (tx) => {
    await outbox.publish(tx, 'account', 'close', { orderingKey: 'acct-1', timerId: 'close', activateInMs: 60_000 });
    await outbox.publish(tx, 'account', 'statement', { orderingKey: 'acct-1' });
  });
  assert.equal(outbox.pending()[1]?.nextAttemptAt.getTime(), outbox.clock.nowMs() + 60_000, 'inherits the timer’s time');
  assert.equal(await outbox.transaction((tx) => outbox.cancelTimer(tx, 'account', 'close')), true);
  await outbox.drain();
  assert.deepEqual(fired, ['statement']);
});

test('without a DLQ a terminal row is deleted: nacked_terminal, no dead letter; a bare nack retries with its delay', async () => {
  const outbox = createTestOutbox({ ...quiet(), dlqTable: false });
  let runs = 0;
  outbox.subscribe('q', (_m, ctx) => {
    runs += 1;
    if (runs === 1) ctx.nack({ delayMs: 250 });
    else ctx.reject('done trying');
  });
  await outbox.transaction((tx) => outbox.publish(tx, 'q', 1));
  await outbox.drain({ advanceClock: true });
  assert.deepEqual(
    outbox.retried.map((r) => [r.attempt, r.delayMs, r.error, r.exceptionType]),
    [[1, 250, undefined, undefined]],
  );
  assert.deepEqual(outbox.deadLetters, []);
  assert.deepEqual(
    outbox.events.filter((e) => e.type !== 'fetched' && e.type !== 'published').map((e) => e.type),
    ['dispatched', 'nacked_retried', 'dispatched', 'nacked_terminal'],
  );
  assert.equal(outbox.pending().length, 0);
});

test('bad arguments: fetchUnprocessed limit, drain maxSteps, clock.set backwards, transaction(fn)', async () => {
  const outbox = createTestOutbox(quiet());
  await assert.rejects(outbox.fetchUnprocessed({ limit: 0 }), /limit: expected an integer from 1 to 10000/);
  await assert.rejects(outbox.drain({ maxSteps: 0 }), /maxSteps: expected an integer >= 1/);
  assert.throws(() => {
    outbox.clock.set(new Date('2000-01-01'));
  }, /clock\.set\(date\): expected a time at or after/);
  assert.throws(() => outbox.transaction('nope' as never), /transaction\(fn\)/);
  await assert.rejects(
    outbox.transaction((tx) => outbox.publish(tx, '', 1)),
    /queue: expected a non-empty string/,
  );
});

test('a publish whose transaction ended before its insert rejects with NotInTransactionError, as on PostgreSQL; the row never lands', async () => {
  const outbox = createTestOutbox(quiet());
  const tx = outbox.transaction();
  const single = outbox.publish(tx, 'q', 'un-awaited');
  const batch = outbox.publishBatch(tx, 'q', ['b1', 'b2']);
  await tx.commit();
  await assert.rejects(single, (error: unknown) => {
    assert.ok(error instanceof NotInTransactionError);
    assert.match(error.message, /outbox\.publish\(\): the transaction it was called in ended before its statement ran/);
    return true;
  });
  await assert.rejects(batch, /outbox\.publishBatch\(\): the transaction it was called in ended/);
  assert.deepEqual(outbox.pending(), []);
  assert.equal(outbox.published.length, 0);
  // autocommit: true says "on its own" on purpose: the row then commits by itself, as through a pool.
  const rolledBack = outbox.transaction();
  const own = outbox.publish(rolledBack, 'q', 'own', { autocommit: true });
  await rolledBack.rollback();
  assert.notEqual(await own, null);
  assert.deepEqual(
    outbox.published.map((p) => p.body),
    ['own'],
  );
  // Any other write path into an ended transaction fails the same way instead of writing nowhere.
  assert.throws(() => {
    tx.delete(outbox.pending()[0] as never);
  }, NotInTransactionError);
});

test('a keyed timer cancelled in the transaction that published it releases the rows behind it at once (the statement sees its own inserts)', async () => {
  const outbox = createTestOutbox(quiet());
  const now = outbox.clock.nowMs();
  const key = { orderingKey: 'K' };
  assert.equal(
    await outbox.transaction(async (tx) => {
      await outbox.publish(tx, 'orders', 'timeout', { ...key, timerId: 'T', activateInMs: 60_000 });
      await outbox.publish(tx, 'orders', 'paid', key);
      const cancelled = await outbox.cancelTimer(tx, 'orders', 'T');
      assert.deepEqual(
        (await outbox.fetchUnprocessed(tx)).map((row) => [row.body, row.nextAttemptAt.getTime() - now]),
        [['paid', 0]],
        'the transaction sees the release',
      );
      return cancelled;
    }),
    true,
  );
  assert.deepEqual(
    outbox.pending().map((row) => [row.body, row.nextAttemptAt.getTime() - now]),
    [['paid', 0]],
  );
  assert.deepEqual(
    outbox.published.map((p) => [p.body, p.nextAttemptAt.getTime() - now]),
    [['paid', 0]],
  );
});

test('a keyed timer cancelled and published again in one transaction: the new one follows the released rows, not the old time', async () => {
  const outbox = createTestOutbox(quiet());
  const now = outbox.clock.nowMs();
  const key = { orderingKey: 'K' };
  await outbox.transaction(async (tx) => {
    await outbox.publish(tx, 'orders', 'timeout', { ...key, timerId: 'T', activateInMs: 60_000 });
    await outbox.publish(tx, 'orders', 'paid', key);
  });
  await outbox.transaction(async (tx) => {
    assert.equal(await outbox.cancelTimer(tx, 'orders', 'T'), true);
    assert.notEqual(await outbox.publish(tx, 'orders', 'timeout again', { ...key, timerId: 'T', activateInMs: 30_000 }), null);
  });
  assert.deepEqual(
    outbox.pending().map((row) => [row.body, row.nextAttemptAt.getTime() - now]),
    [
      ['paid', 0],
      ['timeout again', 30_000],
    ],
  );
});

test('a rolled-back cancel of a keyed timer changes nothing; until it ends, the released rows are its own', async () => {
  const outbox = createTestOutbox(quiet());
  const now = outbox.clock.nowMs();
  const fired: unknown[] = [];
  outbox.subscribe('orders', (m) => {
    fired.push(m.body);
  });
  const key = { orderingKey: 'K' };
  await outbox.transaction(async (tx) => {
    await outbox.publish(tx, 'orders', 'timeout', { ...key, timerId: 'T', activateInMs: 60_000 });
    await outbox.publish(tx, 'orders', 'paid', key);
  });
  const cancelling = outbox.transaction();
  assert.equal(await outbox.cancelTimer(cancelling, 'orders', 'T'), true);
  assert.deepEqual(
    (await outbox.fetchUnprocessed(cancelling)).map((row) => [row.body, row.nextAttemptAt.getTime() - now]),
    [['paid', 0]],
  );
  assert.deepEqual(
    outbox.pending().map((row) => [row.body, row.nextAttemptAt.getTime() - now]),
    [
      ['timeout', 60_000],
      ['paid', 60_000],
    ],
    'others see the committed times until it commits',
  );
  outbox.clock.advance(60_000);
  assert.equal((await outbox.drain()).delivered, 0, 'both rows are locked by the open cancel (SKIP LOCKED)');
  await cancelling.rollback();
  assert.deepEqual(
    outbox.pending().map((row) => [row.body, row.nextAttemptAt.getTime() - now]),
    [
      ['timeout', 60_000],
      ['paid', 60_000],
    ],
  );
  await outbox.drain();
  assert.deepEqual(fired, ['timeout', 'paid']);
});

test('what a handler, a fetch or the records hand out is a copy: mutating it does not change the row, as each real claim decodes its own', async () => {
  const outbox = createTestOutbox(quiet());
  const seen: [Record<string, string>, string][] = [];
  outbox.subscribe(
    'q',
    (m) => {
      seen.push([{ ...m.headers }, m.payload.toString()]);
      (m.headers as Record<string, string>).tenant = 'mutated';
      m.payload.fill(0x41);
      if (seen.length === 1) throw new Error('retry me');
    },
    { retry: new ConstantRetry({ delayMs: 10, maxAttempts: 3 }) },
  );
  await outbox.transaction((tx) => outbox.publish(tx, 'q', 'hello', { headers: { tenant: 't1' } }));
  const [fetched] = await outbox.fetchUnprocessed();
  (fetched?.headers as Record<string, string>).tenant = 'fetched';
  fetched?.payload.fill(0x42);
  (outbox.pending()[0]?.headers as Record<string, string>).tenant = 'pending';
  (outbox.published[0]?.headers as Record<string, string>).tenant = 'published';
  await outbox.drain({ advanceClock: true });
  assert.deepEqual(
    seen.map(([headers, payload]) => [headers.tenant, payload]),
    [
      ['t1', 'hello'],
      ['t1', 'hello'],
    ],
  );
  assert.equal(outbox.acked[0]?.body, 'hello');
});

test('a binary body is handed out as a copy too: bytes a handler overwrote are not what the retry, the records or the DLQ row see', async () => {
  const outbox = createTestOutbox(quiet());
  const runs: string[] = [];
  outbox.subscribe(
    'bytes',
    (m) => {
      const bytes = m.body as Buffer;
      runs.push(bytes.toString());
      bytes.fill(0x41);
      throw new Error('fails every time');
    },
    { retry: new ConstantRetry({ delayMs: 10, maxAttempts: 2 }) },
  );
  await outbox.transaction((tx) => outbox.publish(tx, 'bytes', Buffer.from('raw')));
  (outbox.published[0]?.body as Buffer).fill(0x42);
  await outbox.drain({ advanceClock: true });
  assert.deepEqual(runs, ['raw', 'raw']);
  assert.equal((outbox.deadLetters[0]?.body as Buffer).toString(), 'raw');
});

test('fetchUnprocessed refuses unknown and null options with the real InvalidOptionError, with or without a transaction', async () => {
  const outbox = createTestOutbox(quiet());
  await outbox.transaction((tx) => outbox.publish(tx, 'a', 1));
  const tx = outbox.transaction();
  for (const call of [
    () => outbox.fetchUnprocessed({ limt: 5 } as never),
    () => outbox.fetchUnprocessed({ queues: 'a' } as never),
    () => outbox.fetchUnprocessed(tx, { limt: 5 } as never),
  ]) {
    await assert.rejects(call(), (error: unknown) => {
      assert.ok(error instanceof InvalidOptionError);
      assert.match(error.message, /^(limt|queues): expected one of the fetchUnprocessed options \(queue, limit\)/);
      return true;
    });
  }
  await assert.rejects(
    outbox.fetchUnprocessed(null as never),
    /fetchUnprocessed options: expected an object such as \{ queue, limit \}, got null/,
  );
  await assert.rejects(outbox.fetchUnprocessed(tx, null as never), /fetchUnprocessed options: expected an object/);
  assert.equal((await outbox.fetchUnprocessed(tx, { queue: 'a', limit: 1 })).length, 1);
  await tx.rollback();
});

test('drain options are checked: an unknown key, a wrong type or a non-object throws InvalidOptionError naming it', async () => {
  const outbox = createTestOutbox(quiet());
  const refused = async (options: unknown, option: string) => {
    await assert.rejects(outbox.drain(options as never), (error: unknown) => {
      assert.ok(error instanceof InvalidOptionError);
      assert.equal(error.option, option);
      return true;
    });
  };
  // A typo ran only what was due now, silently.
  await refused({ advanceclock: true }, 'advanceclock');
  await refused({ advanceClock: 'yes' }, 'advanceClock');
  await refused({ maxSteps: '5' }, 'maxSteps');
  await refused(null, 'options');
  await refused(true, 'options');
  assert.equal((await outbox.drain({ advanceClock: false, maxSteps: 1 })).delivered, 0);
});

// No timing assert (performance lives in bench/): the timeout is a hang guard. A drain step that
// scanned the table once per keyed row took 110 s here and hits it; the one-pass step takes ~1.5 s.
test(
  'drain over thousands of distinct ordering keys finishes, each key in turn: each step finds every key’s head once',
  { timeout: 60_000 },
  async () => {
    const keys = 3000;
    const outbox = createTestOutbox({ ...quiet(), maxDrainSteps: keys + 10 });
    const order: string[] = [];
    outbox.subscribe('orders', (m) => {
      order.push(m.orderingKey ?? '-');
    });
    await outbox.transaction(async (tx) => {
      for (let i = 0; i < keys; i += 1) await outbox.publish(tx, 'orders', i, { orderingKey: `k${i % (keys - 1)}` });
    });
    assert.equal((await outbox.drain()).delivered, keys);
    // The key with two rows ran the second after every other key's head: it waited for its turn.
    assert.deepEqual(order.slice(0, 2), ['k0', 'k1']);
    assert.equal(order.at(-1), 'k0');
  },
);
