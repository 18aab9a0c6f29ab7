import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';

import { resolveSchemaNames } from '../../src/schema/schema-names.js';
import { buildRowLockSql } from '../../src/subscriber/row-lock-sql.js';
import { useTestDatabase } from '../support/database.js';
import { messageText } from '../support/message-text.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const ROW_LOCK = { lease: 'row-lock', ...FAST_POLL } as const;

/** A pool whose clients record the text of every message they send (messageText: one per round trip). */
function recordingPool(applicationName: string): { pool: pg.Pool; texts: string[] } {
  const texts: string[] = [];
  const pool = new pg.Pool({ connectionString: db.url, max: 4, application_name: applicationName });
  pool.on('error', () => undefined);
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      texts.push(messageText(args[0]));
      return query(...args);
    };
  });
  db.onCleanup(() => pool.end().catch(() => undefined));
  return { pool, texts };
}

/** A COMMIT message that begins the next batch's transaction (and, pipelined, claims its rows). */
const CHAINED = /COMMIT; BEGIN; SELECT set_config\('plan_cache_mode', 'force_generic_plan', true\)/;
const CLAIM = buildRowLockSql(resolveSchemaNames('rl_chain', undefined)).claimOne.text;

describe("lease: 'row-lock' batches chained under a backlog (COMMIT carries the next BEGIN and claim)", () => {
  test('every row is delivered once and per-key order holds while batches chain', async () => {
    const { pool, texts } = recordingPool('rl_chain');
    const { outbox, log } = await migratedOutbox(newOutbox, pool, 'rl_chain');
    const runs = new Map<string, number>();
    const order = new Map<string, number[]>();
    outbox.subscribe(
      'chain',
      (message) => {
        runs.set(message.id, (runs.get(message.id) ?? 0) + 1);
        const { key, n } = message.body as { key?: string; n: number };
        if (key !== undefined) order.set(key, [...(order.get(key) ?? []), n]);
      },
      { ...ROW_LOCK, concurrency: 4, fetchBatchSize: 20 },
    );
    // Unkeyed rows fill the batches (a chain needs full claims); keyed rows interleave with them.
    const ids = await inTransaction(db.pool, async (client) => {
      const published: string[] = [];
      for (let n = 0; n < 40; n += 1) {
        published.push(
          ...(await outbox.publishBatch(
            client,
            'chain',
            Array.from({ length: 20 }, (_, i) => ({ n: n * 20 + i })),
          )),
        );
        for (const key of ['a', 'b', 'c']) {
          const id = await outbox.publish(client, 'chain', { key, n }, { orderingKey: key });
          if (id !== null) published.push(id);
        }
      }
      return published;
    });
    outbox.start();
    await waitFor(async () => (await remaining(db.pool, 'chain', 'rl_chain')) === 0, { timeoutMs: 20_000, what: 'drained' });
    await outbox.stop();
    assert.deepEqual(new Set(runs.keys()), new Set(ids), 'every row delivered');
    assert.ok(
      [...runs.values()].every((n) => n === 1),
      'no row delivered twice',
    );
    assert.equal(log.of('acked').length, ids.length);
    const inOrder = Array.from({ length: 40 }, (_, i) => i);
    for (const key of ['a', 'b', 'c']) assert.deepEqual(order.get(key), inOrder, `key ${key} in order`);
    const chained = texts.filter((text) => CHAINED.test(text));
    assert.ok(chained.length >= 5, `batches chained (${chained.length} COMMITs carried a BEGIN)`);
    assert.ok(
      chained.every((text) => /^DELETE FROM \S+ WHERE id = ANY\(\$1::bigint\[\]\); COMMIT; BEGIN;/.test(text)),
      "a chained COMMIT follows its batch's acks' DELETE (a prepared statement) in the same message",
    );
    // One round trip per batch under the backlog: the next claim rides in the COMMIT message, and
    // no claim of a chained batch leaves on its own.
    assert.ok(
      chained.every((text) => text.endsWith(`; ${CLAIM}`)),
      'a chained COMMIT carries the next claim',
    );
    const claims = texts.filter((text) => text.endsWith(CLAIM));
    const alone = claims.filter((text) => !CHAINED.test(text));
    assert.ok(
      alone.length <= claims.length - chained.length,
      `only unchained batches claim in a message of their own (${alone.length} of ${claims.length})`,
    );
    assert.ok(
      alone.length < chained.length,
      `most claims rode in a COMMIT message (${alone.length} alone, ${chained.length} chained)`,
    );
    // The pool's connections came back outside any transaction (the last batch of the chain released, stop() ended a begun one).
    const { rows } = await db.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'rl_chain' AND state LIKE 'idle in transaction%'`,
    );
    assert.equal(Number(rows[0]?.n), 0, 'no connection left in a transaction');
  });

  test('a batch begun by the previous COMMIT whose backend dies mid-batch: it rolls back, its rows are delivered again, none lost', async () => {
    const { pool, texts } = recordingPool('rl_chain_victim');
    const { outbox, log } = await migratedOutbox(newOutbox, pool, 'rl_chain_kill');
    const runs = new Map<string, number>();
    let killed = false;
    let chainedBeforeKill = 0;
    outbox.subscribe(
      'kill',
      async (message) => {
        runs.set(message.id, (runs.get(message.id) ?? 0) + 1);
        // Deep in the backlog: this batch began in its predecessor's COMMIT message.
        if (!killed && runs.size === 65) {
          killed = true;
          chainedBeforeKill = texts.filter((text) => CHAINED.test(text)).length;
          await db.pool.query(
            `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'rl_chain_victim' AND state = 'idle in transaction'`,
          );
        }
      },
      { ...ROW_LOCK, concurrency: 1, fetchBatchSize: 10 },
    );
    const ids = await publishCommitted(
      outbox,
      db.pool,
      'kill',
      Array.from({ length: 200 }, (_, i) => i),
    );
    outbox.start();
    await waitFor(async () => (await remaining(db.pool, 'kill', 'rl_chain_kill')) === 0, { timeoutMs: 20_000, what: 'drained' });
    await outbox.stop();
    assert.ok(chainedBeforeKill >= 2, `the killed batch ran in a chain (${chainedBeforeKill} chained COMMITs before it)`);
    assert.deepEqual(new Set(runs.keys()), new Set(ids), 'every row delivered, none lost');
    assert.ok(
      [...runs.values()].some((n) => n > 1),
      'the killed batch ran again',
    );
    assert.equal(log.of('acked').length, ids.length, 'acked once per row: only batches that committed report');
    assert.ok(newOutbox.logger.entries.some((e) => /row-lock batch rolled back/.test(e.message)));
  });

  // Unprepared as behind PgBouncer in transaction mode: every statement unnamed, the COMMIT's
  // answer flushed all the same, and a last batch that ends unchained still deletes its acks.
  for (const preparedStatements of [true, false]) {
    test(`the COMMIT lands but the claim sent after it fails: the batch reports committed, nothing runs twice, the loop claims on a new connection (preparedStatements: ${String(preparedStatements)})`, async () => {
      const table = preparedStatements ? 'rl_chain_cf' : 'rl_chain_cfu';
      const { pool } = recordingPool(`rl_chain_claim_fails_${String(preparedStatements)}`);
      const { outbox, log } = await migratedOutbox(newOutbox, pool, table, { queryTimeoutMs: 300, preparedStatements });
      // The logger is the file's: this test reads what was logged from here on.
      const loggedBefore = newOutbox.logger.entries.length;
      const runs = new Map<string, number>();
      let locker: pg.PoolClient | undefined;
      outbox.subscribe(
        'cf',
        async (message, ctx) => {
          runs.set(message.id, (runs.get(message.id) ?? 0) + 1);
          // The first batch's last row: an ACCESS EXCLUSIVE lock on the paused-queues table, queued
          // behind this batch's own claim (not awaited: it is granted at this batch's COMMIT), makes
          // the claim that COMMIT's message carries wait until the client gives up (300 ms + 1 s).
          if (runs.size === 10 && locker === undefined) {
            const held = await db.pool.connect();
            locker = held;
            await held.query('BEGIN');
            void held.query(`LOCK TABLE ${table}_paused IN ACCESS EXCLUSIVE MODE`).then(() => {
              setTimeout(() => {
                void held.query('ROLLBACK').finally(() => {
                  held.release();
                });
              }, 2_500);
            });
          }
          ctx.ack();
        },
        { ...ROW_LOCK, concurrency: 1, fetchBatchSize: 10 },
      );
      const ids = await publishCommitted(
        outbox,
        db.pool,
        'cf',
        // 25: the last batch (5 rows) ends unchained, its acks in the COMMIT's message.
        Array.from({ length: 25 }, (_, i) => i),
      );
      outbox.start();
      await waitFor(async () => (await remaining(db.pool, 'cf', table)) === 0, { timeoutMs: 20_000, what: 'drained' });
      await outbox.stop();
      assert.deepEqual(new Set(runs.keys()), new Set(ids), 'every row delivered');
      assert.ok(
        [...runs.values()].every((n) => n === 1),
        'no row ran twice: the first batch committed, though its message failed after the COMMIT',
      );
      assert.equal(log.of('acked').length, ids.length, 'its acks reported once, as committed');
      const logged = newOutbox.logger.entries.slice(loggedBefore);
      assert.ok(
        logged.some((e) => /next claim sent with its COMMIT failed/.test(e.message)),
        'the failed claim is logged',
      );
      assert.ok(!logged.some((e) => /row-lock batch rolled back/.test(e.message)), 'no batch reported rolled back');
    });
  }
});

describe('chained batches and the pool', () => {
  test('stop() during a backlog: no connection goes back to the pool inside a transaction, no row lost or run twice', async () => {
    const { pool } = recordingPool('rl_chain_stop');
    const { outbox } = await migratedOutbox(newOutbox, pool, 'rl_chain_stop');
    const runs = new Map<string, number>();
    outbox.subscribe(
      'stop',
      (message) => {
        runs.set(message.id, (runs.get(message.id) ?? 0) + 1);
      },
      { ...ROW_LOCK, concurrency: 4, fetchBatchSize: 20 },
    );
    const ids = await publishCommitted(
      outbox,
      db.pool,
      'stop',
      Array.from({ length: 3000 }, (_, i) => i),
    );
    outbox.start();
    await waitFor(() => runs.size >= 300, { what: 'the backlog under way' });
    // Stopped while a COMMIT message carrying the next BEGIN may be in flight: the loop ends that empty transaction.
    await outbox.stop();
    const { rows: open } = await db.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'rl_chain_stop' AND state LIKE 'idle in transaction%'`,
    );
    assert.equal(Number(open[0]?.n), 0, 'no connection left in a transaction');
    const left = await remaining(db.pool, 'stop', 'rl_chain_stop');
    assert.ok(left > 0, 'stopped mid-backlog');
    assert.equal(runs.size + left, ids.length, 'every row handled (and deleted) or still in the table');
    assert.ok(
      [...runs.values()].every((n) => n === 1),
      'no row ran twice',
    );
  });

  test('a loop gives its connection back between batches when the pool has waiters: a token subscription on the same pool is served during a backlog', async () => {
    // Two connections, both held by the row-lock loops during a backlog. Kept from batch to batch,
    // the token subscription's claim would wait for the whole backlog (or fail at queryTimeoutMs).
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    pool.on('error', () => undefined);
    db.onCleanup(() => pool.end().catch(() => undefined));
    const { outbox } = await migratedOutbox(newOutbox, pool, 'rl_share');
    let backlogHandled = 0;
    outbox.subscribe(
      'backlog',
      async () => {
        backlogHandled += 1;
        await new Promise((resolve) => setTimeout(resolve, 1));
      },
      { ...ROW_LOCK, concurrency: 4, fetchBatchSize: 20 },
    );
    let tokenHandled = 0;
    outbox.subscribe(
      'token',
      () => {
        tokenHandled += 1;
      },
      FAST_POLL,
    );
    await publishCommitted(
      outbox,
      db.pool,
      'backlog',
      Array.from({ length: 5000 }, (_, i) => i),
    );
    outbox.start();
    await waitFor(() => backlogHandled >= 200, { timeoutMs: 20_000, what: 'the backlog under way' });
    await publishCommitted(outbox, db.pool, 'token', [1, 2, 3]);
    await waitFor(async () => tokenHandled === 3 && (await remaining(db.pool, 'token', 'rl_share')) === 0, {
      timeoutMs: 20_000,
      what: 'the token rows handled and acked',
    });
    const left = await remaining(db.pool, 'backlog', 'rl_share');
    await outbox.stop();
    assert.ok(left > 0, 'the token subscription was served while the backlog was still draining');
  });
});

describe('the claim skips the id range of the subscription’s other open batch ($4, $5)', () => {
  test('rows in the range are left out, locked or not; NULL leaves out nothing', async () => {
    const table = 'rl_range';
    await migratedOutbox(newOutbox, db.pool, table);
    const outbox = newOutbox({ pool: db.pool, table });
    await publishCommitted(
      outbox,
      db.pool,
      'range',
      Array.from({ length: 40 }, (_, i) => i),
    );
    const { claimOne, claimMany } = buildRowLockSql(resolveSchemaNames(table, undefined));
    const claim = async (client: pg.ClientBase, range: [string, string] | [null, null], many = false) =>
      (
        await client.query<[string | null]>({
          text: (many ? claimMany : claimOne).text,
          values: [many ? ['range'] : 'range', 60_000, 10, ...range],
          rowMode: 'array',
        })
      ).rows
        // The multi-queue claim's report rows (id NULL, queue-schedule.ts) are not claimed rows.
        .filter((row) => row[0] !== null)
        .map((row) => Number(row[0]));
    const all = (await db.pool.query<{ id: string }>(`SELECT id FROM ${table} ORDER BY id`)).rows.map((r) => Number(r.id));
    const first = all.slice(0, 10);
    const second = all.slice(10, 20);
    const range: [string, string] = [String(first[0]), String(first[9])];
    await inTransaction(db.pool, async (a) => {
      assert.deepEqual(await claim(a, [null, null]), first, 'the first batch: the oldest ten');
      await inTransaction(db.pool, async (b) => {
        assert.deepEqual(await claim(b, range), second, 'the next claim, given the first batch’s range');
      });
    });
    await inTransaction(db.pool, async (c) => {
      assert.deepEqual(await claim(c, range), second, 'the range is left out even unlocked (for at most one batch)');
      // The same transaction: its own locks do not hide rows from it.
      assert.deepEqual(await claim(c, range, true), second, 'the multi-queue claim skips it too');
    });
  });
});
