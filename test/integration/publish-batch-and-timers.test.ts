import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import type pg from 'pg';

import { InvalidOptionError } from '../../src/index.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { inTransaction as inTx } from '../support/transaction.js';

const db = useTestDatabase(import.meta.url);
const outbox = outboxFactory(db)({ pool: db.pool });

function inTransaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return inTx(db.pool, fn);
}

/** Wraps a client so the test can count the statements publish sends through it. */
function counting(client: pg.PoolClient): { executor: pg.PoolClient; count: () => number } {
  let calls = 0;
  const executor = new Proxy(client, {
    get(target, property, receiver) {
      if (property === 'query') {
        return (...args: unknown[]) => {
          calls += 1;
          return (target.query as (...a: unknown[]) => unknown).apply(target, args);
        };
      }
      return Reflect.get(target, property, receiver) as unknown;
    },
  });
  return { executor, count: () => calls };
}

describe('publishBatch', () => {
  before(async () => {
    await outbox.migrate();
  });

  test('10,000 messages in ONE statement, ids returned in body order', async () => {
    const bodies = Array.from({ length: 10_000 }, (_, i) => ({ i }));
    const ids = await inTransaction(async (client) => {
      const { executor, count } = counting(client);
      const result = await outbox.publishBatch(executor, 'batch.q', bodies);
      assert.equal(count(), 1, 'one statement for the whole batch');
      return result;
    });
    assert.equal(ids.length, 10_000);
    const numeric = ids.map(BigInt);
    for (let i = 1; i < numeric.length; i += 1) assert.ok(numeric[i]! > numeric[i - 1]!, 'ids ascend with body order');
    const rows = await outbox.fetchUnprocessed({ queue: 'batch.q', limit: 10_000 });
    assert.equal(rows.length, 10_000);
    assert.deepEqual(
      rows.map((r) => r.id),
      ids,
      'the i-th id is the row of the i-th body',
    );
    assert.deepEqual(
      rows.slice(0, 3).map((r) => r.body),
      [{ i: 0 }, { i: 1 }, { i: 2 }],
    );
    assert.equal(new Set(rows.map((r) => r.headers['correlation-id'])).size, 10_000, 'each message has its own correlation id');
  });

  test('an empty batch sends nothing; a shared correlation id and headers apply to every row', async () => {
    await inTransaction(async (client) => {
      const { executor, count } = counting(client);
      assert.deepEqual(await outbox.publishBatch(executor, 'batch.q', []), []);
      assert.equal(count(), 0);
    });
    const ids = await inTransaction((c) =>
      outbox.publishBatch(c, 'shared.q', ['a', Buffer.from('b')], { correlationId: 'req-1', headers: { k: 'v' } }),
    );
    const rows = await outbox.fetchUnprocessed({ queue: 'shared.q' });
    assert.deepEqual(
      rows.map((r) => r.id),
      ids,
    );
    assert.deepEqual(
      rows.map((r) => [r.headers['correlation-id'], r.headers.k, r.headers['content-type']]),
      [
        ['req-1', 'v', 'text/plain; charset=utf-8'],
        ['req-1', 'v', 'application/octet-stream'],
      ],
    );
  });

  test('each row stores the bytes and headers publish() stores for the same body: binary, empty, NUL, newlines, non-ASCII, mixed in one batch', async () => {
    const bodies: unknown[] = [
      Buffer.from([0, 10, 44, 92, 120, 127, 128, 255, 0]),
      '',
      Buffer.alloc(0),
      { nul: '\u0000', newline: 'a\nb,c', quote: '"\\', text: 'héllo wörld 🌍 漢字' },
      'line one\nline two, with a comma \u0000 and ünïcode',
      [1, 'x', null, true, { nested: ['\r\n'] }],
      42,
      null,
      Buffer.from('{"looks":"like json"}'),
    ];
    const headers = { note: 'multi\nline, "quoted" ✓', 'x-empty': '' };
    const batchIds = await inTransaction((c) => outbox.publishBatch(c, 'exact-batch.q', bodies, { headers }));
    const singleIds = await inTransaction(async (c) => {
      const ids: string[] = [];
      for (const body of bodies) ids.push((await outbox.publish(c, 'exact-single.q', body, { headers }))!);
      return ids;
    });
    const stored = async (ids: readonly string[]) =>
      (
        await db.pool.query<{ payload: Buffer; headers: Record<string, string> }>(
          `SELECT payload, headers - 'correlation-id' AS headers FROM txoutbox.outbox WHERE id = ANY($1::bigint[]) ORDER BY id`,
          [ids],
        )
      ).rows;
    const batchRows = await stored(batchIds);
    const singleRows = await stored(singleIds);
    assert.equal(batchRows.length, bodies.length);
    assert.deepEqual(batchRows, singleRows, 'payload bytes and headers identical to single publishes');
    assert.deepEqual(batchRows[0]?.payload, bodies[0], 'a binary body stored byte for byte');
    assert.equal(batchRows[1]?.payload.length, 0);
    assert.equal(batchRows[2]?.payload.length, 0);
    assert.deepEqual(batchRows[3]?.headers, { ...headers, 'content-type': 'application/json' });
    const rows = await outbox.fetchUnprocessed({ queue: 'exact-batch.q' });
    assert.deepEqual(
      rows.map((r) => r.body),
      bodies,
      'each body decodes back to what was published',
    );
  });

  test('activateInMs is applied by the database clock', async () => {
    await inTransaction((c) => outbox.publishBatch(c, 'delayed.q', ['a', 'b'], { activateInMs: 90_000 }));
    const { rows } = await db.pool.query<{ delay_ms: number }>(
      `SELECT extract(epoch FROM next_attempt_at - created_at) * 1000 AS delay_ms FROM txoutbox.outbox WHERE queue = 'delayed.q'`,
    );
    assert.deepEqual(
      rows.map((r) => Math.round(r.delay_ms)),
      [90_000, 90_000],
    );
  });
});

describe('timers', () => {
  test('one live row per (queue, timerId): a duplicate returns null, another queue does not collide', async () => {
    const first = await inTransaction((c) =>
      outbox.publish(c, 'timer.q', 'a', { timerId: 'order-1-reminder', activateInMs: 60_000 }),
    );
    assert.ok(first !== null);
    assert.equal(await inTransaction((c) => outbox.publish(c, 'timer.q', 'b', { timerId: 'order-1-reminder' })), null);
    assert.ok((await inTransaction((c) => outbox.publish(c, 'other-timer.q', 'c', { timerId: 'order-1-reminder' }))) !== null);
    const rows = await outbox.fetchUnprocessed({ queue: 'timer.q' });
    assert.deepEqual(
      rows.map((r) => [r.body, r.timerId]),
      [['a', 'order-1-reminder']],
    );
    // Two publishes of the same timer in one transaction: the second sees the first.
    const both = await inTransaction(async (c) => [
      await outbox.publish(c, 'timer.q', 'x', { timerId: 'same-tx' }),
      await outbox.publish(c, 'timer.q', 'y', { timerId: 'same-tx' }),
    ]);
    assert.ok(both[0] !== null);
    assert.equal(both[1], null);
  });

  test('cancelTimer deletes a pending timer, and the id can be reused afterwards', async () => {
    await inTransaction((c) => outbox.publish(c, 'cancel.q', 'a', { timerId: 't-1', activateInMs: 60_000 }));
    assert.equal(await inTransaction((c) => outbox.cancelTimer(c, 'cancel.q', 't-1')), true);
    assert.equal(await inTransaction((c) => outbox.cancelTimer(c, 'cancel.q', 't-1')), false, 'already cancelled');
    assert.equal(await inTransaction((c) => outbox.cancelTimer(c, 'cancel.q', 'never')), false);
    assert.ok((await inTransaction((c) => outbox.publish(c, 'cancel.q', 'b', { timerId: 't-1' }))) !== null);
  });

  test('a cancel that rolls back keeps the timer', async () => {
    await inTransaction((c) => outbox.publish(c, 'cancel-rb.q', 'a', { timerId: 't-rb', activateInMs: 60_000 }));
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      assert.equal(await outbox.cancelTimer(client, 'cancel-rb.q', 't-rb'), true);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    assert.equal((await outbox.fetchUnprocessed({ queue: 'cancel-rb.q' })).length, 1);
  });

  test('cancelTimer refuses a leased row: its handler is already running', async () => {
    await inTransaction((c) => outbox.publish(c, 'leased.q', 'a', { timerId: 't-leased' }));
    // Take the lease the way a subscriber's claim does.
    await db.pool.query(
      `UPDATE txoutbox.outbox SET acquired_token = gen_random_uuid(), acquired_at = now() WHERE queue = 'leased.q'`,
    );
    assert.equal(await inTransaction((c) => outbox.cancelTimer(c, 'leased.q', 't-leased')), false);
    const rows = await outbox.fetchUnprocessed({ queue: 'leased.q' });
    assert.equal(rows.length, 1);
    assert.ok(rows[0]?.acquiredAt instanceof Date);
  });

  test('cancelTimer does not wait for a row another transaction holds locked (a row-lock batch running it): false at once', async () => {
    // A keyed timer, and a row behind it under its key that inherited its time.
    await inTransaction(async (c) => {
      await outbox.publish(c, 'locked.q', 'timer', { timerId: 't-locked', orderingKey: 'k', activateInMs: 3_600_000 });
      await outbox.publish(c, 'locked.q', 'behind', { orderingKey: 'k' });
    });
    const behindDue = async (): Promise<boolean | undefined> =>
      (
        await db.pool.query<{ due: boolean }>(
          `SELECT next_attempt_at <= now() AS due FROM txoutbox.outbox WHERE queue = 'locked.q' AND timer_id IS NULL`,
        )
      ).rows[0]?.due;
    assert.equal(await behindDue(), false);
    const holder = await db.pool.connect();
    try {
      await holder.query('BEGIN');
      // Locked the way a row-lock claim locks it: FOR UPDATE, nothing written (acquired_token stays NULL).
      await holder.query(`SELECT id FROM txoutbox.outbox WHERE queue = 'locked.q' AND timer_id = 't-locked' FOR UPDATE`);
      const cancelled = await inTransaction(async (c) => {
        // Waiting for the holder's COMMIT would fail here instead of hanging the test.
        await c.query(`SET LOCAL lock_timeout = '2s'`);
        return await outbox.cancelTimer(c, 'locked.q', 't-locked');
      });
      assert.equal(cancelled, false, 'a locked row is leased: its handler is running');
      assert.equal(await behindDue(), false, 'nothing was cancelled, so the row behind keeps the time it inherited');
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
    // The lock released (the batch rolled back, say): the timer is pending again, and cancellable.
    assert.equal(await inTransaction((c) => outbox.cancelTimer(c, 'locked.q', 't-locked')), true);
    assert.equal(await behindDue(), true, 'the row behind the cancelled timer is due now');
  });
});

describe('fetchUnprocessed', () => {
  test('reads without leasing, filters by queue, honours and validates limit', async () => {
    await inTransaction((c) => outbox.publishBatch(c, 'inspect.q', ['a', 'b', 'c']));
    const two = await outbox.fetchUnprocessed({ queue: 'inspect.q', limit: 2 });
    assert.deepEqual(
      two.map((r) => r.body),
      ['a', 'b'],
    );
    assert.ok(two.every((r) => r.acquiredAt === null && r.deliveriesCount === 0));
    await assert.rejects(outbox.fetchUnprocessed({ limit: 0 }), /limit: expected an integer from 1 to 10000, got 0/);
    await assert.rejects(outbox.fetchUnprocessed({ queue: '' }), /queue: expected/);
    // Reported (review): an unknown key was ignored ({ queues: 'a' } read every queue) and null threw a TypeError.
    await assert.rejects(
      outbox.fetchUnprocessed({ queues: 'a' } as never),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'queues',
    );
    await assert.rejects(outbox.fetchUnprocessed(null as never), InvalidOptionError);
    await assert.rejects(outbox.fetchUnprocessed(db.pool, null as never), InvalidOptionError);
  });
});
