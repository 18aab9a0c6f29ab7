import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';

import { ConstantRetry } from '../../src/index.js';
import { resolveSchemaNames } from '../../src/schema/schema-names.js';
import { buildRowLockSql } from '../../src/subscriber/row-lock-sql.js';
import { buildSubscriberSql } from '../../src/subscriber/sql.js';
import { useTestDatabase } from '../support/database.js';
import type { EventLog } from '../support/events.js';
import { outboxFactory } from '../support/outboxes.js';
import { migratedOutbox, SLOW_POLL } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

// Issue 18: a subscription over several queues lists in its claims only the queues it expects rows
// in (src/subscriber/queue-schedule.ts). None of that may strand a row.
const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

const QUEUES = ['a', 'b', 'c'];
/** Polls so slow that only the schedule (a wake, a due time) can explain a quick delivery. */

/** Claims so far that listed `queue` (a claim emits one `fetched` event per queue of its subscription). */
const claimsOf = (log: EventLog, queue: string) => log.of('fetched').filter((e) => e.queue === queue).length;

/**
 * Makes `queue` a queue that never gives a row: its head J2 waits behind J1 (same key), which
 * another process holds leased. A claim that lists it comes back empty and reports it due (reports
 * leave the key's turn out), so it stays active.
 */
async function blockedQueue(table: string, queue: string): Promise<void> {
  await db.pool.query(
    `INSERT INTO ${table} (queue, payload, headers, ordering_key)
     SELECT $1, convert_to(to_json(n)::text, 'UTF8'), '{"content-type": "application/json"}', 'j' FROM unnest(ARRAY['J1', 'J2']) AS n`,
    [queue],
  );
  await db.pool.query(
    `UPDATE ${table} SET acquired_token = gen_random_uuid(), acquired_at = now(), deliveries_count = 1
     WHERE id = (SELECT min(id) FROM ${table} WHERE queue = $1)`,
    [queue],
  );
}

/** Inserts a ready row as another process would without NOTIFY. */
async function insertWithoutNotify(table: string, queue: string, body: string): Promise<void> {
  await db.pool.query(
    `INSERT INTO ${table} (queue, payload, headers) VALUES ($1, convert_to($2, 'UTF8'), '{"content-type": "application/json"}')`,
    [queue, JSON.stringify(body)],
  );
}

// Both lease modes keep a schedule: the same cases run for each. Table names get the mode's suffix.
for (const lease of ['token', 'row-lock'] as const) {
  const t = (name: string) => (lease === 'token' ? name : `${name}_rl`);
  describe(`the queue schedule of a subscription over several queues (lease: ${lease})`, () => {
    test('an idle queue is listed again when a publish wakes it', async () => {
      const { outbox, log } = await migratedOutbox(newOutbox, db.pool, t('qs_wake'));
      const handled: unknown[] = [];
      outbox.subscribe(QUEUES, (message) => void handled.push(message.body), { name: 'qs', lease, ...SLOW_POLL });
      outbox.start();
      // The first claim lists every queue and finds them all empty: all idle.
      await waitFor(() => claimsOf(log, 'b') >= 1, { what: 'the first claim' });
      const publishedAt = Date.now();
      await inTransaction(db.pool, (c) => outbox.publish(c, 'b', 'woken'));
      await waitFor(() => handled.length === 1, { what: 'the message in the idle queue', timeoutMs: 5_000 });
      assert.deepEqual(handled, ['woken']);
      assert.ok(Date.now() - publishedAt < 5_000, 'woken, not polled (the poll is 30 s)');
    });

    test('a claim emits fetched for the queues it listed only: idle queues are not fetched', async () => {
      // No LISTEN: its connect wakes every queue once more, whenever it comes (a slow machine made
      // that claim land after `before`). The publish below wakes this Outbox's subscription itself.
      const { outbox, log } = await migratedOutbox(newOutbox, db.pool, t('qs_fetched'), { listen: false });
      const handled: unknown[] = [];
      outbox.subscribe(QUEUES, (message) => void handled.push(message.body), { name: 'qs', lease, ...SLOW_POLL });
      outbox.start();
      await waitFor(() => claimsOf(log, 'c') >= 1, { what: 'the first claim' });
      const before = { a: claimsOf(log, 'a'), c: claimsOf(log, 'c') };
      await inTransaction(db.pool, (c) => outbox.publish(c, 'b', 'woken'));
      await waitFor(() => handled.length === 1, { what: 'the message in b', timeoutMs: 5_000 });
      await waitFor(() => log.of('fetched').some((e) => e.queue === 'b' && e.count === 1), { what: "b's fetch" });
      // a and c stayed idle: claims did not list them, so no (empty) fetch of theirs is reported.
      assert.deepEqual({ a: claimsOf(log, 'a'), c: claimsOf(log, 'c') }, before);
    });

    test('a delayed message in an idle queue is delivered when due, not at the next poll', async () => {
      const { outbox } = await migratedOutbox(newOutbox, db.pool, t('qs_delay'));
      const handledAt: number[] = [];
      const publishedAt = Date.now();
      await inTransaction(db.pool, (c) => outbox.publish(c, 'c', 'later', { activateInMs: 800 }));
      outbox.subscribe(QUEUES, () => void handledAt.push(Date.now()), { name: 'qs', lease, ...SLOW_POLL });
      outbox.start();
      // The first claim lists every queue, takes nothing, and reports c's row due in ~800 ms: c is
      // idle until then, and the claim loop's 30 s idle sleep ends then.
      await waitFor(() => handledAt.length === 1, { what: 'the delayed message', timeoutMs: 5_000 });
      const waited = handledAt[0]! - publishedAt;
      assert.ok(waited >= 780, `delivered after ${waited} ms, not before its time`);
      assert.ok(waited < 2_000, `and soon after it (${waited} ms), though the poll is 30 s`);
    });

    test('a row published without a notification is found by the safety net while the subscription is busy', async () => {
      const { outbox, log } = await migratedOutbox(newOutbox, db.pool, t('qs_safety'), { listen: false });
      const handled: string[] = [];
      // a stays busy (a slow stream of rows the subscription itself publishes), so the loop keeps claiming.
      outbox.subscribe(
        QUEUES,
        (message) => {
          handled.push(message.body as string);
        },
        { name: 'qs', lease, minPollIntervalMs: 300, maxPollIntervalMs: 60_000 },
      );
      outbox.start();
      await waitFor(() => claimsOf(log, 'b') >= 1, { what: 'the first claim' });
      const insertedAt = Date.now();
      await insertWithoutNotify(t('qs_safety'), 'b', 'unannounced');
      let n = 0;
      await waitFor(
        async () => {
          n += 1;
          await inTransaction(db.pool, (c) => outbox.publish(c, 'a', `busy ${n}`));
          return handled.includes('unannounced');
        },
        { what: 'the unannounced row', timeoutMs: 5_000 },
      );
      const waited = Date.now() - insertedAt;
      assert.ok(waited < 2_000, `found after ${waited} ms (safety net 300 ms, poll backoff up to 60 s)`);
    });

    test('an idle subscription still polls every queue: a row inserted without a notification is found', async () => {
      const { outbox } = await migratedOutbox(newOutbox, db.pool, t('qs_poll'), { listen: false });
      const handled: string[] = [];
      outbox.subscribe(QUEUES, (message) => void handled.push(message.body as string), {
        name: 'qs',
        lease,
        minPollIntervalMs: 50,
        maxPollIntervalMs: 200,
      });
      outbox.start();
      await new Promise((resolve) => setTimeout(resolve, 300));
      await insertWithoutNotify(t('qs_poll'), 'c', 'polled');
      await waitFor(() => handled.includes('polled'), { what: 'the polled row', timeoutMs: 3_000 });
    });

    test('a handler failure in an otherwise idle queue is retried at its time', async () => {
      const { outbox } = await migratedOutbox(newOutbox, db.pool, t('qs_retry'));
      let runs = 0;
      outbox.subscribe(
        QUEUES,
        () => {
          runs += 1;
          if (runs === 1) throw new Error('first run fails');
        },
        { name: 'qs', lease, ...SLOW_POLL, retry: new ConstantRetry({ delayMs: 200 }) },
      );
      outbox.start();
      await inTransaction(db.pool, (c) => outbox.publish(c, 'a', 'flaky'));
      await waitFor(() => runs === 2, { what: 'the retry', timeoutMs: 5_000 });
    });

    test('rows a batch or buffer gave back unstarted, in an otherwise idle queue, are claimed again at once', async () => {
      const { outbox } = await migratedOutbox(newOutbox, db.pool, t('qs_given_back'), { listen: false });
      const handled: string[] = [];
      let first = true;
      // One slot, a batch of 5, and a first handler slower than the lease: a row-lock batch's
      // deadline leaves its other rows unstarted (unlocked as they were); a lease-mode buffer
      // releases them at half the lease. The claim's report saw no other row of b: b is idle, and
      // only the rows coming back list it again (the poll is 30 s; no LISTEN, whose connect would
      // list every queue again).
      outbox.subscribe(
        QUEUES,
        async (message) => {
          if (first) {
            first = false;
            await new Promise((resolve) => setTimeout(resolve, 1_200));
            return;
          }
          handled.push(message.body as string);
        },
        {
          name: 'qs',
          lease,
          ...SLOW_POLL,
          leaseTtlMs: 1_000,
          concurrency: 1,
          fetchBatchSize: 5,
          retry: new ConstantRetry({ delayMs: 100 }),
        },
      );
      await inTransaction(db.pool, async (c) => {
        for (let i = 0; i < 5; i += 1) await outbox.publish(c, 'b', `row ${i}`);
      });
      outbox.start();
      await waitFor(() => handled.length >= 4, { what: 'the rows given back', timeoutMs: 8_000 });
    });

    if (lease === 'row-lock')
      test('a batch rolled back mid-batch (its backend terminated), its queue otherwise idle: delivered again without waiting for the safety net', async () => {
        const pool = new pg.Pool({ connectionString: db.url, max: 4, application_name: 'qs_victim' });
        pool.on('error', () => undefined);
        db.onCleanup(() => pool.end().catch(() => undefined));
        const { outbox } = await migratedOutbox(newOutbox, pool, t('qs_rollback'), { listen: false });
        const runs = new Map<string, number>();
        let killed = false;
        outbox.subscribe(
          QUEUES,
          async (message) => {
            runs.set(message.body as string, (runs.get(message.body as string) ?? 0) + 1);
            if (!killed && runs.size === 2) {
              killed = true;
              await db.pool.query(
                `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'qs_victim' AND state = 'idle in transaction'`,
              );
            }
          },
          { name: 'qs', lease, ...SLOW_POLL, fetchBatchSize: 5 },
        );
        await inTransaction(db.pool, async (c) => {
          for (let i = 0; i < 5; i += 1) await outbox.publish(c, 'b', `row ${i}`);
        });
        outbox.start();
        // The claim's report saw no other row of b (idle for 30 s): only the rolled-back rows
        // coming back (rowReturned) list it again, after the error pause (250 ms at first).
        await waitFor(async () => (await db.pool.query(`SELECT 1 FROM ${t('qs_rollback')}`)).rowCount === 0, {
          what: 'every row delivered again and acked',
          timeoutMs: 10_000,
        });
        assert.equal(runs.size, 5);
        assert.ok(
          [...runs.values()].some((n) => n > 1),
          'the killed batch ran again',
        );
      });

    test('200 queues, every row of each drained once, with the queues listed a few at a time', async () => {
      const { outbox, log } = await migratedOutbox(newOutbox, db.pool, t('qs_many'));
      const queues = Array.from({ length: 200 }, (_, i) => `m${i}`);
      const perQueue = 5;
      // One row of every queue delayed by 300 ms: idle queues with a due time must come back.
      await db.pool.query(
        `INSERT INTO ${t('qs_many')} (queue, payload, headers, next_attempt_at)
       SELECT 'm' || (g % 200), convert_to(to_json(g)::text, 'UTF8'), '{"content-type": "application/json"}',
         CASE WHEN g < 200 THEN now() + interval '300 milliseconds' ELSE now() END
       FROM generate_series(0, 200 * $1::int - 1) AS g`,
        [perQueue],
      );
      const seen = new Map<number, number>();
      outbox.subscribe(queues, (message) => void seen.set(message.body as number, (seen.get(message.body as number) ?? 0) + 1), {
        name: 'qs',
        lease,
        fetchBatchSize: 20,
        concurrency: 8,
        ...SLOW_POLL,
      });
      outbox.start();
      await waitFor(() => seen.size === 200 * perQueue, { what: 'every row', timeoutMs: 15_000 });
      assert.deepEqual(
        [...seen.values()].filter((count) => count !== 1),
        [],
        'none twice',
      );
      const left = async () => (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${t('qs_many')}`)).rows[0]!.n;
      await waitFor(async () => (await left()) === 0, { what: 'every ack' });
      // Claims listed a few queues each (at most fetchBatchSize / 2 active ones), not all 200.
      assert.ok(log.of('fetched').length > 0);
    });
  });
}

for (const lease of ['token', 'row-lock'] as const) {
  describe(`the queue schedule (lease: ${lease}): the single-queue claim`, () => {
    test('a claim that lists one queue runs claimOne with its report (claimOneReported)', async () => {
      const table = lease === 'token' ? 'qs_one_listed' : 'qs_one_listed_rl';
      // One connection: the statements prepared on it are the subscription's. No LISTEN: its connect
      // wakes every queue, and that wake merged with b's would list them all (claimMany). The
      // publish below wakes this Outbox's subscription itself.
      const outbox = newOutbox({ connectionString: db.url, poolSize: 1, table, listen: false });
      await outbox.migrate();
      const names = resolveSchemaNames(table, undefined);
      const sql = lease === 'token' ? buildSubscriberSql(names) : buildRowLockSql(names);
      const runs = async (name: string) => {
        const { rows } = await outbox.internals.pool.query<{ runs: string }>(
          'SELECT (generic_plans + custom_plans)::text AS runs FROM pg_prepared_statements WHERE name = $1',
          [name],
        );
        return Number(rows[0]?.runs ?? 0);
      };
      const handled: unknown[] = [];
      outbox.subscribe(QUEUES, (message) => void handled.push(message.body), { name: 'qs', lease, ...SLOW_POLL });
      outbox.start();
      // The first claim lists every queue (claimMany) and finds them all empty: all idle.
      await waitFor(async () => (await runs(sql.claimMany.name)) >= 1, { what: 'the first claim' });
      assert.equal(await runs(sql.claimOneReported.name), 0);
      // A publish wakes b alone: the next claim lists b only.
      await inTransaction(db.pool, (c) => outbox.publish(c, 'b', 'woken'));
      await waitFor(() => handled.length === 1, { what: 'the message in b', timeoutMs: 5_000 });
      assert.deepEqual(handled, ['woken']);
      assert.ok((await runs(sql.claimOneReported.name)) >= 1, 'b was claimed by claimOneReported');
    });
  });
}

describe('the queue schedule (lease: token): keyed rows', () => {
  test("a keyed row is claimed once its key's previous row is acked, though an empty claim tried its queue meanwhile", async () => {
    const table = 'qs_keyed';
    // No LISTEN: its connect would wake every queue once more, whenever it comes.
    const { outbox } = await migratedOutbox(newOutbox, db.pool, table, { listen: false });
    // q1 never gives a row. Each claim that lists it comes back empty and reports it due.
    await blockedQueue(table, 'q1');
    const handled: string[] = [];
    outbox.subscribe(
      ['q0', 'q1'],
      async (message) => {
        handled.push(message.body as string);
        // While K1 runs, K2 waits for its turn: the claims list q0 and q1, get nothing, and the loop sleeps.
        if (message.body === 'K1') await new Promise((resolve) => setTimeout(resolve, 300));
      },
      // fetchBatchSize 2: one active queue per claim, in turn.
      { name: 'qs', fetchBatchSize: 2, ...SLOW_POLL },
    );
    outbox.start();
    await inTransaction(db.pool, async (c) => {
      await outbox.publish(c, 'q0', 'K1', { orderingKey: 'k' });
      await outbox.publish(c, 'q0', 'K2', { orderingKey: 'k' });
    });
    await waitFor(() => handled.includes('K2'), { what: 'K2, once K1 was acked (the poll is 30 s)', timeoutMs: 5_000 });
    assert.deepEqual(handled, ['K1', 'K2']);
  });
});

for (const lease of ['token', 'row-lock'] as const) {
  describe(`the queue schedule (lease: ${lease}): a retried keyed row`, () => {
    test("runs when due: the key's younger row waits behind it, so the queue's report shows when", async () => {
      const table = lease === 'token' ? 'qs_keyed_retry' : 'qs_keyed_retry_rl';
      const { outbox } = await migratedOutbox(newOutbox, db.pool, table, { listen: false });
      // q1..q4 never give a row (each one's head waits behind a row another process holds leased),
      // so the five queues are active in turn, one per claim (fetchBatchSize 2), and all count as
      // tried once the claims come back empty: the claim the retry's wake-up brings must list q0.
      const blocked = ['q1', 'q2', 'q3', 'q4'];
      for (const queue of blocked) await blockedQueue(table, queue);
      const runs: { body: string; at: number }[] = [];
      outbox.subscribe(
        ['q0', ...blocked],
        (message, ctx) => {
          runs.push({ body: message.body as string, at: Date.now() });
          // K1's first run fails: retried in 700 ms. K2 (same key) is due no earlier than K1 (a
          // key's times do not decrease in id order: ordering.md), so the report of the claim after
          // the retry shows K1's due time and idles q0 until then, though q1..q4 stay active.
          if (message.body === 'K1' && runs.length === 1) ctx.nack({ delayMs: 700 });
          else ctx.ack();
        },
        { name: 'qs', lease, fetchBatchSize: 2, ...SLOW_POLL },
      );
      outbox.start();
      await inTransaction(db.pool, async (c) => {
        await outbox.publish(c, 'q0', 'K1', { orderingKey: 'k' });
        await outbox.publish(c, 'q0', 'K2', { orderingKey: 'k' });
      });
      await waitFor(() => runs.length === 3, { what: 'K1, K1 again, K2 (the poll is 30 s)', timeoutMs: 5_000 });
      assert.deepEqual(
        runs.map((run) => run.body),
        ['K1', 'K1', 'K2'],
      );
      const waited = runs[1]!.at - runs[0]!.at;
      assert.ok(waited >= 690, `K1 ran again after ${waited} ms, not before its retry was due`);
    });
  });
}
