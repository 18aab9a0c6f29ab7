/**
 * Per-key ordering (publish option orderingKey, architecture/ordering.md): a key's rows run one at
 * a time in publish order across processes, retries and crashes; other keys and unkeyed rows are
 * not held up; a key's publishes are serialized so its ids follow its commits.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';

import { ConstantRetry, InvalidOptionError, type Outbox } from '../../src/index.js';
import { useTestDatabase } from '../support/database.js';
import { keyedDeadLetters } from '../support/dead-letter.js';
import { outboxFactory } from '../support/outboxes.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const HOUR = 3_600_000;

/** An Outbox on its own pool, as another process would have. */
function processOutbox(table: string): Outbox {
  const pool = new pg.Pool({ connectionString: db.url, max: 6 });
  db.onCleanup(() => pool.end());
  return newOutbox({ pool, table });
}

/** A deterministic pseudo-random sequence (the failures and delays of a run are reproducible). */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

describe('per-key ordering', () => {
  test('50 keys × 200 rows, random delays and failures, two Outboxes competing: every key in order, never two at once', async () => {
    const table = 'ordering_many_keys';
    const operator = newOutbox({ pool: db.pool, table });
    await operator.migrate();
    const keys = Array.from({ length: 50 }, (_, k) => `account-${String(k)}`);
    const perKey = 200;
    // Interleaved publishes: 20 rows of every key per round, ten rounds, in one transaction each.
    for (let round = 0; round < perKey / 20; round += 1) {
      await inTransaction(db.pool, async (client) => {
        for (const key of keys) {
          const bodies = Array.from({ length: 20 }, (_, i) => ({ key, seq: round * 20 + i }));
          await operator.publishBatch(client, 'ledger', bodies, { orderingKey: key });
        }
      });
    }
    const handled = new Map<string, number[]>(keys.map((key) => [key, []]));
    const running = new Set<string>();
    const overlaps: string[] = [];
    const keysSeenBy: Set<string>[] = [new Set(), new Set()];
    const next = random(42);
    const consumers = [processOutbox(table), processOutbox(table)];
    for (const [index, outbox] of consumers.entries()) {
      outbox.subscribe(
        'ledger',
        async (message) => {
          const { key, seq } = message.body as { key: string; seq: number };
          assert.equal(message.orderingKey, key);
          if (running.has(key)) overlaps.push(`${key}#${String(seq)}`);
          running.add(key);
          try {
            const delay = Math.floor(next() * 3);
            if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
            if (next() < 0.1) throw new Error(`transient failure of ${key}#${String(seq)}`);
            handled.get(key)?.push(seq);
            keysSeenBy[index]?.add(key);
          } finally {
            running.delete(key);
          }
        },
        { concurrency: 8, fetchBatchSize: 10, retry: new ConstantRetry({ delayMs: 5, maxAttempts: 100 }), ...FAST_POLL },
      );
      outbox.start();
    }
    await waitFor(() => [...handled.values()].every((seqs) => seqs.length === perKey), {
      what: 'every row of every key handled',
      timeoutMs: 120_000,
    });
    await Promise.all(consumers.map((outbox) => outbox.stop()));
    const expected = Array.from({ length: perKey }, (_, i) => i);
    for (const [key, seqs] of handled) assert.deepEqual(seqs, expected, `${key} handled in publish order`);
    assert.deepEqual(overlaps, [], 'no two rows of one key ran at once');
    // Both processes took part: the order held across them, not because one process did it all.
    assert.ok(
      keysSeenBy.every((seen) => seen.size > 0),
      'both Outboxes handled rows',
    );
  });

  test('a stuck key holds only itself: other keys and unkeyed rows flow past its waiting rows', async () => {
    const table = 'ordering_stuck_key';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    await inTransaction(db.pool, async (client) => {
      await outbox.publishBatch(client, 'jobs', ['stuck-1', 'stuck-2', 'stuck-3'], { orderingKey: 'stuck' });
      await outbox.publishBatch(client, 'jobs', ['free-1', 'free-2', 'free-3'], { orderingKey: 'free' });
      await outbox.publishBatch(client, 'jobs', ['plain-1', 'plain-2']);
    });
    const handled: string[] = [];
    let stuckAttempts = 0;
    outbox.subscribe(
      'jobs',
      (message) => {
        if (message.body === 'stuck-1') {
          stuckAttempts += 1;
          throw new Error('the head of "stuck" fails');
        }
        handled.push(message.body as string);
      },
      // The head's retry is an hour away: until then its key waits, and nothing else may.
      { concurrency: 4, retry: new ConstantRetry({ delayMs: HOUR, maxAttempts: 5 }), ...FAST_POLL },
    );
    outbox.start();
    await waitFor(() => handled.length === 5 && stuckAttempts === 1, { what: 'every row but the stuck key handled' });
    assert.deepEqual(
      handled.filter((body) => body.startsWith('free')),
      ['free-1', 'free-2', 'free-3'],
    );
    assert.ok(!handled.some((body) => body.startsWith('stuck')), 'the rows behind the failed head wait for it');
    // stop() drains the outcome writes: the last ack and the head's retry have landed.
    await outbox.stop();
    const { rows } = await db.pool.query<{ body: string; scheduled: boolean }>(
      `SELECT convert_from(payload, 'UTF8') AS body, acquired_token IS NULL AND next_attempt_at > now() AS scheduled
       FROM ${table} ORDER BY id`,
    );
    assert.deepEqual(
      rows.map((r) => r.body),
      ['stuck-1', 'stuck-2', 'stuck-3'],
      'the stuck key keeps its rows, in order',
    );
    assert.equal(rows[0]?.scheduled, true, 'its head is scheduled for a retry, keeping its place');
    // Its waiting rows moved to the head's retry: claims no longer walk past them (BENCHMARKS.md).
    assert.deepEqual(
      rows.map((r) => r.scheduled),
      [true, true, true],
    );
  });

  test("a key's next row is claimed as soon as the previous one ends, not at the next poll", async () => {
    const table = 'ordering_hot_key';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    const seqs = Array.from({ length: 40 }, (_, i) => i);
    await inTransaction(db.pool, (client) => outbox.publishBatch(client, 'hot', seqs, { orderingKey: 'one-key' }));
    const handled: number[] = [];
    // Polls an hour apart: only the end of a keyed row can wake the claim for its successor.
    outbox.subscribe(
      'hot',
      (message) => {
        handled.push(message.body as number);
      },
      { concurrency: 4, minPollIntervalMs: HOUR, maxPollIntervalMs: HOUR },
    );
    outbox.start();
    await waitFor(() => handled.length === seqs.length, { what: 'all 40 rows of one key handled without a poll' });
    assert.deepEqual(handled, seqs);
    await outbox.stop();
  });

  test('a delayed row holds the rows published after it under its key', async () => {
    const table = 'ordering_delayed_head';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    await inTransaction(db.pool, async (client) => {
      await outbox.publish(client, 'mail', 'later', { orderingKey: 'user-7', activateInMs: HOUR });
      await outbox.publish(client, 'mail', 'now', { orderingKey: 'user-7' });
      await outbox.publish(client, 'mail', 'other-user', { orderingKey: 'user-8' });
    });
    const peeked = await outbox.peek('mail');
    assert.equal(peeked.rows.length, 3);
    // 'now' inherits the delay of the row before it under its key: due no earlier than it can run.
    const { rows: due } = await db.pool.query<{ body: string; same: boolean }>(
      `SELECT convert_from(payload, 'UTF8') AS body,
         next_attempt_at = (SELECT next_attempt_at FROM ${table} WHERE convert_from(payload, 'UTF8') = 'later') AS same
       FROM ${table} ORDER BY id`,
    );
    assert.deepEqual(
      due.map((r) => [r.body, r.same]),
      [
        ['later', true],
        ['now', true],
        ['other-user', false],
      ],
    );
    const handled: string[] = [];
    outbox.subscribe(
      'mail',
      (message) => {
        handled.push(message.body as string);
      },
      FAST_POLL,
    );
    outbox.start();
    await waitFor(() => handled.length === 1, { what: 'the other key handled' });
    // Every row was committed before the first claim, which would have taken 'now' with
    // 'other-user' had it been claimable. stop() drains the ack.
    await outbox.stop();
    assert.deepEqual(handled, ['other-user']);
    const { rows } = await db.pool.query<{ body: string; leased: boolean }>(
      `SELECT convert_from(payload, 'UTF8') AS body, acquired_token IS NOT NULL AS leased FROM ${table} ORDER BY id`,
    );
    assert.deepEqual(rows, [
      { body: 'later', leased: false },
      { body: 'now', leased: false },
    ]);
  });

  test('cancelling a keyed timer gives the rows behind it back their own time', async () => {
    const table = 'ordering_cancel_timer';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    await inTransaction(db.pool, async (client) => {
      await outbox.publish(client, 'orders', 'reminder', {
        orderingKey: 'order-1',
        timerId: 'remind-order-1',
        activateInMs: HOUR,
      });
      await outbox.publish(client, 'orders', 'shipped', { orderingKey: 'order-1' });
    });
    assert.equal(await inTransaction(db.pool, (client) => outbox.cancelTimer(client, 'orders', 'remind-order-1')), true);
    const handled: string[] = [];
    outbox.subscribe(
      'orders',
      (message) => {
        handled.push(message.body as string);
      },
      FAST_POLL,
    );
    outbox.start();
    await waitFor(() => handled.length === 1, { what: 'the row behind the cancelled timer handled now' });
    assert.deepEqual(handled, ['shipped']);
    await outbox.stop();
  });

  test("publishes under one key are serialized: a waiting publish draws its id only after the first one's transaction ends", async () => {
    const table = 'ordering_publish_lock';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    const first = await db.pool.connect();
    const second = await db.pool.connect();
    const observer = await db.pool.connect();
    try {
      await first.query('BEGIN');
      const firstId = await outbox.publish(first, 'q', 'first', { orderingKey: 'k' });
      await second.query('BEGIN');
      const secondPublish = outbox.publish(second, 'q', 'second', { orderingKey: 'k' });
      // The second publish waits on the key's lock ...
      await waitFor(
        async () =>
          (
            await observer.query<{ waiting: boolean }>(
              `SELECT count(*) > 0 AS waiting FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`,
              [(second as unknown as { processID: number }).processID],
            )
          ).rows[0]?.waiting === true,
        { what: 'the second publish waits for the key' },
      );
      // ... without having drawn an id: were its id drawn before the lock, it could commit behind
      // a younger row of its key that is already running.
      const { rows } = await observer.query<{ last: string }>(
        `SELECT last_value::text AS last FROM pg_sequences WHERE schemaname || '.' || sequencename = (
           SELECT pg_get_serial_sequence('${table}', 'id'))`,
      );
      assert.equal(rows[0]?.last, firstId, 'no id drawn by the waiting publish');
      // Another key is not held up.
      await inTransaction(db.pool, (client) => outbox.publish(client, 'q', 'elsewhere', { orderingKey: 'other' }));
      await first.query('COMMIT');
      const secondId = await secondPublish;
      await second.query('COMMIT');
      assert.ok(BigInt(secondId ?? '0') > BigInt(firstId ?? '0'));
    } finally {
      first.release();
      second.release();
      observer.release();
    }
  });

  test('a redrive never waits on a key a transaction holds: it moves the other rows, says how many it left, and cannot deadlock the publisher', async () => {
    const table = 'ordering_redrive_busy';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    // Three dead letters: keys a and b, and one without a key.
    await db.pool.query(
      `INSERT INTO ${table}_dlq (original_id, queue, payload, created_at, attempts_count, deliveries_count, failure_reason, ordering_key)
       SELECT n, 'q', convert_to('dead ' || coalesce(k, '-'), 'UTF8'), now(), 1, 1, 'rejected', k
       FROM unnest(ARRAY['a', 'b', NULL]) WITH ORDINALITY AS t(k, n)`,
    );
    const holder = await db.pool.connect();
    try {
      await holder.query('BEGIN');
      // An application transaction publishing under key b: it holds b's lock until it ends.
      await outbox.publish(holder, 'q', 'held', { orderingKey: 'b' });
      const redrive = outbox.dlq.redrive({ queue: 'q' }, { keyWaitMs: 300 });
      let timer: NodeJS.Timeout | undefined;
      const result = await Promise.race([
        redrive,
        new Promise((resolve) => {
          timer = setTimeout(() => {
            resolve('still waiting for key b after 10 s');
          }, 10_000);
        }),
      ]);
      clearTimeout(timer);
      assert.deepEqual(result, { redriven: 2, keyBusy: 1 });
      // The publisher goes on under key a, which the redrive had to lock: no deadlock.
      await outbox.publish(holder, 'q', 'held too', { orderingKey: 'a' });
      await holder.query('COMMIT');
    } finally {
      holder.release();
    }
    assert.deepEqual(await outbox.dlq.redrive({ queue: 'q' }), { redriven: 1, keyBusy: 0 });
    const { rows } = await db.pool.query<{ body: string }>(
      `SELECT convert_from(payload, 'UTF8') AS body FROM ${table} WHERE ordering_key = 'b' ORDER BY id`,
    );
    assert.deepEqual(
      rows.map((row) => row.body),
      ['held', 'dead b'],
      'the dead letter goes behind the row its key was busy with',
    );
  });

  /** Dead letters in queue q with the given keys, in id order (test/support/dead-letter.ts). */
  function deadLetters(table: string, keys: readonly (string | null)[]): Promise<string[]> {
    return keyedDeadLetters(db.pool, table, keys);
  }

  async function bodiesInOutbox(table: string): Promise<string[]> {
    const { rows } = await db.pool.query<{ body: string }>(
      `SELECT convert_from(payload, 'UTF8') AS body FROM ${table} ORDER BY id`,
    );
    return rows.map((row) => row.body);
  }

  /** A redrive one row per batch, while `holder` (in a transaction) holds a key its rows need, committed right after the first batch. */
  function redriveFreeingAfterFirstBatch(outbox: Outbox, holder: pg.PoolClient, selection: string[] | { queue: string }) {
    let batches = 0;
    return outbox.dlq.redrive(selection, {
      batchSize: 1,
      keyWaitMs: 5_000,
      onBatch: async () => {
        if ((batches += 1) === 1) await holder.query('COMMIT');
      },
    });
  }

  test('a batch made only of busy keys does not end the redrive: the rows after it still move', async () => {
    const table = 'ordering_redrive_busy_batch';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    await deadLetters(table, ['b', 'b', null]);
    const holder = await db.pool.connect();
    try {
      await holder.query('BEGIN');
      await outbox.publish(holder, 'q', 'held', { orderingKey: 'b' });
      // The first batch holds both of b's rows: nothing in it can move.
      assert.deepEqual(await outbox.dlq.redrive({ queue: 'q' }, { batchSize: 2, keyWaitMs: 0 }), { redriven: 1, keyBusy: 2 });
      await holder.query('COMMIT');
    } finally {
      holder.release();
    }
    assert.deepEqual(await outbox.dlq.redrive({ queue: 'q' }), { redriven: 2, keyBusy: 0 });
    assert.deepEqual(await bodiesInOutbox(table), ['held', 'dead 3 -', 'dead 1 b', 'dead 2 b']);
  });

  test('a key freed between two batches: its later dead letter waits for the earlier one the first batch left', async () => {
    const table = 'ordering_redrive_freed';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    await deadLetters(table, ['k', 'k']);
    const holder = await db.pool.connect();
    try {
      await holder.query('BEGIN');
      await outbox.publish(holder, 'q', 'held', { orderingKey: 'k' });
      // The key is freed right after the first batch found it busy.
      assert.deepEqual(await redriveFreeingAfterFirstBatch(outbox, holder, { queue: 'q' }), { redriven: 2, keyBusy: 0 });
    } finally {
      holder.release();
    }
    assert.deepEqual(await bodiesInOutbox(table), ['held', 'dead 1 k', 'dead 2 k']);
  });

  test("two redrives at once keep a key's order: a row the other one holds keeps its key's later rows in the DLQ", async () => {
    const table = 'ordering_redrive_overlap';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    const [first] = await deadLetters(table, ['k', 'k']);
    // The other redrive: it holds the key's first dead letter and ends without moving it (its key
    // was busy, or it failed). The row lock is all SKIP LOCKED sees of it.
    const other = await db.pool.connect();
    try {
      await other.query('BEGIN');
      await other.query(`SELECT id FROM ${table}_dlq WHERE id = $1 FOR UPDATE`, [first]);
      let batches = 0;
      const redrive = outbox.dlq.redrive(
        { queue: 'q' },
        {
          keyWaitMs: 10_000,
          onBatch: () => {
            batches += 1;
          },
        },
      );
      await waitFor(() => batches >= 2, { what: "the redrive's first pass over the held row" });
      await other.query('ROLLBACK');
      assert.deepEqual(await redrive, { redriven: 2, keyBusy: 0 });
    } finally {
      other.release();
    }
    assert.deepEqual(await bodiesInOutbox(table), ['dead 1 k', 'dead 2 k']);
  });

  test("a redrive by ids moves a key's rows in id order, whatever order the ids came in and whatever batch found the key busy", async () => {
    const table = 'ordering_redrive_ids';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    const [first, second, third, fourth] = await deadLetters(table, ['k', 'k', 'j', 'j']);
    // Newest first, as the list shows them, one per batch.
    assert.deepEqual(await outbox.dlq.redrive([second!, first!], { batchSize: 1 }), { redriven: 2, keyBusy: 0 });
    assert.deepEqual(await bodiesInOutbox(table), ['dead 1 k', 'dead 2 k']);
    const holder = await db.pool.connect();
    try {
      await holder.query('BEGIN');
      await outbox.publish(holder, 'q', 'held', { orderingKey: 'j' });
      // Key j is freed right after the first batch found it busy.
      assert.deepEqual(await redriveFreeingAfterFirstBatch(outbox, holder, [third!, fourth!]), { redriven: 2, keyBusy: 0 });
    } finally {
      holder.release();
    }
    assert.deepEqual(await bodiesInOutbox(table), ['dead 1 k', 'dead 2 k', 'held', 'dead 3 j', 'dead 4 j']);
  });

  test("a redrive by ids whose chunk found every row of a key held elsewhere keeps that key's later rows for the next pass", async () => {
    const table = 'ordering_redrive_ids_overlap';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    const [first, second] = await deadLetters(table, ['k', 'k']);
    // Another redrive holds the first row (its chunk picks nothing), and leaves it behind.
    const other = await db.pool.connect();
    try {
      await other.query('BEGIN');
      await other.query(`SELECT id FROM ${table}_dlq WHERE id = $1 FOR UPDATE`, [first]);
      let batches = 0;
      const redrive = outbox.dlq.redrive([first!, second!], {
        batchSize: 1,
        keyWaitMs: 10_000,
        onBatch: () => {
          batches += 1;
        },
      });
      await waitFor(() => batches >= 2, { what: "the redrive's first pass over both chunks" });
      await other.query('ROLLBACK');
      assert.deepEqual(await redrive, { redriven: 2, keyBusy: 0 });
    } finally {
      other.release();
    }
    assert.deepEqual(await bodiesInOutbox(table), ['dead 1 k', 'dead 2 k']);
  });

  test("a redriven keyed row is due no earlier than its key's row before it, which is not due yet", async () => {
    const table = 'ordering_redrive_behind_delayed';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    await inTransaction(db.pool, (client) => outbox.publish(client, 'q', 'later', { orderingKey: 'k', activateInMs: HOUR }));
    const [dead] = await deadLetters(table, ['k']);
    assert.deepEqual(await outbox.dlq.redrive([dead!]), { redriven: 1, keyBusy: 0 });
    const { rows } = await db.pool.query<{ body: string; due_after_head: boolean; own_now: boolean }>(
      `SELECT convert_from(payload, 'UTF8') AS body,
         next_attempt_at >= first_value(next_attempt_at) OVER (ORDER BY id) AS due_after_head,
         activate_at <= now() AS own_now
       FROM ${table} ORDER BY id`,
    );
    assert.deepEqual(
      rows.map((row) => [row.body, row.due_after_head]),
      [
        ['later', true],
        ['dead 1 k', true],
      ],
      'the key times never decrease in id order',
    );
    assert.equal(rows[1]?.own_now, true, "its own time (activate_at) is the redrive's: a cancelled head gives it back");
  });

  test('a redriven dead letter keeps its key and goes to the end of its line', async () => {
    const table = 'ordering_redrive';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    await inTransaction(db.pool, (client) => outbox.publish(client, 'q', 'poison', { orderingKey: 'k' }));
    outbox.subscribe(
      'q',
      (_message, ctx) => {
        ctx.reject('bad');
      },
      FAST_POLL,
    );
    outbox.start();
    await waitFor(async () => (await outbox.dlq.list({ queue: 'q' })).rows.length === 1, { what: 'the row dead-lettered' });
    await outbox.stop();
    const again = newOutbox({ pool: db.pool, table });
    const [dead] = (await again.dlq.list({ queue: 'q' })).rows;
    assert.equal(dead?.orderingKey, 'k');
    await inTransaction(db.pool, (client) => again.publish(client, 'q', 'after', { orderingKey: 'k' }));
    await again.dlq.redrive([dead?.id ?? '']);
    const { rows } = await db.pool.query<{ body: string; key: string }>(
      `SELECT convert_from(payload, 'UTF8') AS body, ordering_key AS key FROM ${table} ORDER BY id`,
    );
    assert.deepEqual(rows, [
      { body: 'after', key: 'k' },
      { body: 'poison', key: 'k' },
    ]);
  });

  test('code upgraded before the schema: claims fail with an explanation naming the missing column; migrate() heals it', async () => {
    const table = 'ordering_unmigrated';
    const operator = newOutbox({ pool: db.pool, table });
    await operator.migrate();
    // The schema of the version before: no outbox/0004.
    await db.pool.query(`ALTER TABLE ${table} DROP COLUMN ordering_key, DROP COLUMN activate_at`);
    await db.pool.query(`DELETE FROM txoutbox_migrations WHERE table_name = $1 AND version >= 4`, [table]);
    const logger = newOutbox.logger;
    const consumer = newOutbox({ pool: db.pool, table });
    const handled: unknown[] = [];
    consumer.subscribe(
      'q',
      (message) => {
        handled.push(message.body);
      },
      FAST_POLL,
    );
    consumer.start();
    await waitFor(() => logger.messages('error').some((m) => m.includes(`has no column ordering_key`)), {
      what: 'the explanation',
    });
    const explanation = logger.messages('error').find((m) => m.includes('has no column ordering_key')) ?? '';
    assert.match(explanation, /txoutbox migrate --print --since 3/);
    assert.deepEqual((await operator.migrate()).applied, ['outbox/0004_ordering_key', 'outbox/0005_activate_at']);
    await inTransaction(db.pool, (client) => operator.publish(client, 'q', 'after the upgrade', { orderingKey: 'k' }));
    await waitFor(() => handled.length === 1, { what: 'claims work again once migrated, without a restart' });
    await consumer.stop();
  });

  test('a bad orderingKey is refused before anything is written', async () => {
    const outbox = newOutbox({ pool: db.pool, table: 'ordering_bad_key' });
    await outbox.migrate();
    for (const bad of ['', 42, 'x'.repeat(256)]) {
      await assert.rejects(
        inTransaction(db.pool, (client) => outbox.publish(client, 'q', 'body', { orderingKey: bad as string })),
        (error: unknown) => error instanceof InvalidOptionError && error.option === 'orderingKey',
      );
    }
  });
});
