import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';

import type pg from 'pg';

import { resolveSchemaNames } from '../../src/schema/schema-names.js';
import { buildRowLockSql } from '../../src/subscriber/row-lock-sql.js';
import { buildSubscriberSql } from '../../src/subscriber/sql.js';
import { GENERIC_PLAN_SET_LOCAL } from '../../src/util/generic-plan.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { migratedOutbox } from '../support/subscriber-setup.js';

// Issue 18: a claim over many queues must lock about its limit, not queues × limit rows.
const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

const QUEUES = 200;
const ROWS_PER_QUEUE = 50;
const LIMIT = 100;
const LEASE_TTL_MS = 60_000;

type Mode = 'token' | 'row-lock';
interface Row {
  id: string | null;
  queue: string | null;
}

/** A lease-mode claimMany also returns one report row per listed queue (id NULL: queue-schedule.ts): left out here. */
const claimedOnly = (rows: readonly Row[]) => rows.filter((r) => r.id !== null);

const queueList = (count: number) => Array.from({ length: count }, (_, i) => `q${i}`);

/** The claimMany statement of `mode`, with its parameters. */
function claimMany(table: string, mode: Mode, queues: readonly string[]) {
  const names = resolveSchemaNames(table, false);
  return mode === 'token'
    ? { text: buildSubscriberSql(names).claimMany.text, values: [queues, LEASE_TTL_MS, LIMIT, randomUUID(), []] }
    : { text: buildRowLockSql(names).claimMany.text, values: [queues, LEASE_TTL_MS, LIMIT, null, null] };
}

/** `perQueue` ready rows in each of `queues`, round-robin by age (row g is due g ms after an hour ago). */
async function load(table: string, queues: number, perQueue: number, ageOffsetMs = 0): Promise<void> {
  await db.pool.query(
    `INSERT INTO ${table} (queue, payload, next_attempt_at)
     SELECT 'q' || (g % $1::int), '\\x00'::bytea, now() - interval '1 hour' + ($3::int + g) * interval '1 millisecond'
     FROM generate_series(0, $1::int * $2::int - 1) AS g`,
    [queues, perQueue, ageOffsetMs],
  );
}

/**
 * Rows of `table` some other transaction holds locked: the rows this one cannot lock with SKIP
 * LOCKED. Real row locks, counted from outside (pg_locks does not list row locks).
 */
async function lockedByOthers(table: string): Promise<number> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    const { rows } = await client.query<{ total: number; free: number }>(
      `SELECT (SELECT count(*) FROM ${table})::int AS total,
              (SELECT count(*) FROM (SELECT 1 FROM ${table} FOR UPDATE SKIP LOCKED) AS f)::int AS free`,
    );
    return rows[0]!.total - rows[0]!.free;
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}

/** Runs `fn` on a connection inside a transaction kept open until `fn` returns (the claim's locks stay held). */
async function inOpenTransaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    return await fn(client);
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}

const ids = (rows: readonly Row[]) => rows.map((r) => Number(r.id)).sort((a, b) => a - b);

for (const mode of ['token', 'row-lock'] as const) {
  describe(`claimMany over many queues (${mode} mode)`, () => {
    test(`a claim over ${QUEUES} queues × ${ROWS_PER_QUEUE} rows locks about its limit (${LIMIT}), not queues × limit, and takes the oldest rows`, async () => {
      const table = `cm_locks_${mode.replace('-', '_')}`;
      await migratedOutbox(newOutbox, db.pool, table, { dlqTable: false });
      await load(table, QUEUES, ROWS_PER_QUEUE);
      const claim = claimMany(table, mode, queueList(QUEUES));
      await inOpenTransaction(async (client) => {
        const claimed = claimedOnly((await client.query<Row>(claim.text, claim.values)).rows);
        assert.equal(claimed.length, LIMIT);
        // Rows are numbered by age (ids follow g): the oldest 100 are the first 100 ids.
        const oldest = (
          await db.pool.query<{ id: string }>(`SELECT id FROM ${table} ORDER BY next_attempt_at, id LIMIT ${LIMIT}`)
        ).rows;
        assert.deepEqual(ids(claimed), ids(oldest as Row[]), 'the claim takes the oldest rows across the queues');
        const locked = await lockedByOthers(table);
        // The statement before issue 18 locked min(50, 100) rows in each of 200 queues: 10,000.
        assert.ok(locked <= 2 * LIMIT, `the claim locked ${locked} rows to return ${LIMIT}`);
      });
    });

    test('on a never-analyzed table, the generic and the custom plan both lock about the limit and scan no table', async () => {
      const table = `cm_plans_${mode.replace('-', '_')}`;
      await migratedOutbox(newOutbox, db.pool, table, { dlqTable: false });
      // Never analyzed: no autoanalyze may run behind the test's back.
      await db.pool.query(`ALTER TABLE ${table} SET (autovacuum_enabled = off)`);
      await load(table, QUEUES, ROWS_PER_QUEUE);
      const claim = claimMany(table, mode, queueList(QUEUES));
      const types =
        mode === 'token' ? 'text[], double precision, int, uuid, bigint[]' : 'text[], double precision, int, bigint, bigint';
      for (const planMode of ['custom', 'generic'] as const) {
        await inOpenTransaction(async (client) => {
          await client.query(`SET LOCAL plan_cache_mode = force_${planMode}_plan`);
          await client.query(`PREPARE cm_claim(${types}) AS ${claim.text}`);
          const args = [`'{${queueList(QUEUES).join(',')}}'`, LEASE_TTL_MS, LIMIT];
          if (mode === 'token') args.push(`'${randomUUID()}'`, `'{}'`);
          else args.push('NULL', 'NULL');
          let plan: string;
          try {
            const { rows } = await client.query<{ 'QUERY PLAN': string }>(
              `EXPLAIN (ANALYZE, COSTS OFF) EXECUTE cm_claim(${args.join(', ')})`,
            );
            plan = rows.map((r) => r['QUERY PLAN']).join('\n');
          } finally {
            await client.query('DEALLOCATE cm_claim');
          }
          assert.doesNotMatch(plan, new RegExp(`Seq Scan on ${table}\\b`), `${planMode} plan scans the table:\n${plan}`);
          const locked = await lockedByOthers(table);
          assert.ok(locked >= LIMIT && locked <= 2 * LIMIT, `${planMode} plan: ${locked} rows locked to claim ${LIMIT}`);
        });
      }
    });

    test('a concurrent claim is not starved by the first one’s locks, takes other rows, and locks about its limit too', async () => {
      const table = `cm_concurrent_${mode.replace('-', '_')}`;
      await migratedOutbox(newOutbox, db.pool, table, { dlqTable: false });
      await load(table, QUEUES, ROWS_PER_QUEUE);
      const claim = claimMany(table, mode, queueList(QUEUES));
      await inOpenTransaction(async (first) => {
        const firstRows = claimedOnly((await first.query<Row>(claim.text, claim.values)).rows);
        await inOpenTransaction(async (second) => {
          // Both see the same unlocked heads and cutoff: the second one's first pass finds those rows
          // locked and its fill passes take the next ones.
          const secondRows = claimedOnly((await second.query<Row>(claim.text, claim.values)).rows);
          assert.equal(secondRows.length, LIMIT, 'the second claim is full');
          const firstIds = new Set(firstRows.map((r) => r.id));
          assert.ok(
            secondRows.every((r) => !firstIds.has(r.id)),
            'no row claimed twice',
          );
          const locked = await lockedByOthers(table);
          assert.ok(locked <= 4 * LIMIT, `two claims locked ${locked} rows to return ${2 * LIMIT}`);
        });
      });
    });

    test('a queue with old rows is claimed first, whole, ahead of many busy queues', async () => {
      const table = `cm_old_${mode.replace('-', '_')}`;
      await migratedOutbox(newOutbox, db.pool, table, { dlqTable: false });
      await load(table, QUEUES, ROWS_PER_QUEUE, 60_000);
      // 30 rows in queue "old", due before every row of the busy queues.
      await db.pool.query(
        `INSERT INTO ${table} (queue, payload, next_attempt_at)
         SELECT 'old', '\\x00'::bytea, now() - interval '2 hours' + g * interval '1 millisecond' FROM generate_series(1, 30) AS g`,
      );
      const claim = claimMany(table, mode, [...queueList(QUEUES), 'old']);
      await inOpenTransaction(async (client) => {
        const claimed = claimedOnly((await client.query<Row>(claim.text, claim.values)).rows);
        assert.equal(claimed.length, LIMIT);
        assert.equal(claimed.filter((r) => r.queue === 'old').length, 30, 'every row of the old queue');
        assert.ok((await lockedByOthers(table)) <= 2 * LIMIT);
      });
    });

    test('queues with fewer rows than their share: the claim still fills up, from the queues that have more', async () => {
      const table = `cm_short_${mode.replace('-', '_')}`;
      await migratedOutbox(newOutbox, db.pool, table, { dlqTable: false });
      // One row in q0, then q1 and q2 with 200 each: n = ceil(100 / 3) = 34 rows per queue reach only 69.
      await db.pool.query(
        `INSERT INTO ${table} (queue, payload, next_attempt_at) VALUES ('q0', '\\x00', now() - interval '2 hours')`,
      );
      await db.pool.query(
        `INSERT INTO ${table} (queue, payload, next_attempt_at)
         SELECT 'q' || (1 + g % 2), '\\x00'::bytea, now() - interval '1 hour' + g * interval '1 millisecond'
         FROM generate_series(0, 399) AS g`,
      );
      const claim = claimMany(table, mode, ['q0', 'q1', 'q2', 'empty']);
      await inOpenTransaction(async (client) => {
        const claimed = claimedOnly((await client.query<Row>(claim.text, claim.values)).rows);
        assert.equal(claimed.length, LIMIT);
        assert.equal(new Set(claimed.map((r) => r.id)).size, LIMIT, 'no row twice');
        assert.ok(claimed.some((r) => r.queue === 'q0'));
        assert.ok((await lockedByOthers(table)) <= 2 * LIMIT);
      });
    });
  });
}

for (const mode of ['token', 'row-lock'] as const) {
  describe(`a scheduled claim that lists one queue (claimOneReported, ${mode} mode)`, () => {
    interface Reported extends Row {
      report_queue: string | null;
      report_due_ms: string | null;
    }
    const sqlOf = (table: string) => {
      const names = resolveSchemaNames(table, false);
      return mode === 'token' ? buildSubscriberSql(names) : buildRowLockSql(names);
    };
    /** The parameters after $1 and $3 of `mode`'s claims: the lease TTL, then the token and running ids, or the other batch's id range. */
    const args = (queues: string | readonly string[], limit: number) =>
      mode === 'token' ? [queues, LEASE_TTL_MS, limit, randomUUID(), []] : [queues, LEASE_TTL_MS, limit, null, null];
    const reportsOf = (rows: readonly Reported[]) =>
      rows
        .filter((r) => r.id === null)
        .map((r): [string | null, number | null] => [
          r.report_queue,
          r.report_due_ms === null ? null : Math.sign(Number(r.report_due_ms)),
        ]);

    test('takes the rows claimMany takes over that queue, in their order, then the same report row', async () => {
      const table = `cm_one_reported_${mode.replace('-', '_')}`;
      await migratedOutbox(newOutbox, db.pool, table, { dlqTable: false });
      await load(table, 2, 150);
      const sql = sqlOf(table);
      for (const [limit, due] of [
        [LIMIT, 'now' /* 150 rows: 50 left, due now */],
        [200, null /* every row taken: nothing left */],
      ] as const) {
        const one = await inOpenTransaction(
          async (c) => (await c.query<Reported>(sql.claimOneReported.text, args('q1', limit))).rows,
        );
        const many = await inOpenTransaction(
          async (c) => (await c.query<Reported>(sql.claimMany.text, args(['q1'], limit))).rows,
        );
        assert.equal(claimedOnly(one).length, Math.min(limit, 150));
        assert.deepEqual(
          claimedOnly(one).map((r) => r.id),
          claimedOnly(many).map((r) => r.id),
          'the same rows in the same order',
        );
        assert.ok(claimedOnly(one).every((r) => r.queue === 'q1'));
        // The report row comes last, as claimMany's (queue-schedule.ts splitClaimRows).
        assert.equal(one.at(-1)?.id, null);
        assert.deepEqual(reportsOf(one), reportsOf(many));
        const [[queue, sign] = []] = reportsOf(one);
        assert.equal(queue, 'q1');
        if (due === null) assert.equal(sign, null, 'every row taken: nothing left to report');
        else assert.ok(sign !== null && sign !== undefined && sign <= 0, 'rows left, due now');
      }
    });

    test('its generic plan, made on a never-analyzed table under the generic-plan settings, scans no table', async () => {
      // Both modes run it so: a row-lock batch under ROW_LOCK_SETTINGS, a lease claim after GENERIC_PLAN_PRELUDE.
      const table = `cm_one_reported_plan_${mode.replace('-', '_')}`;
      await migratedOutbox(newOutbox, db.pool, table, { dlqTable: false });
      await db.pool.query(`ALTER TABLE ${table} SET (autovacuum_enabled = off)`);
      await load(table, 2, 5_000);
      const sql = sqlOf(table);
      const types =
        mode === 'token' ? 'text, double precision, int, uuid, bigint[]' : 'text, double precision, int, bigint, bigint';
      const last = mode === 'token' ? `'${randomUUID()}', '{}'` : 'NULL, NULL';
      const plan = await inOpenTransaction(async (client) => {
        await client.query(GENERIC_PLAN_SET_LOCAL);
        await client.query(`PREPARE cm_one(${types}) AS ${sql.claimOneReported.text}`);
        try {
          const { rows } = await client.query<{ 'QUERY PLAN': string }>(
            `EXPLAIN (ANALYZE, COSTS OFF) EXECUTE cm_one('q1', ${LEASE_TTL_MS}, ${LIMIT}, ${last})`,
          );
          return rows.map((r) => r['QUERY PLAN']).join('\n');
        } finally {
          await client.query('DEALLOCATE cm_one');
        }
      });
      assert.doesNotMatch(plan, new RegExp(`(Seq|Bitmap Heap) Scan on ${table}\\b`), plan);
      assert.match(plan, new RegExp(`Index Scan using ${table}_ready_idx`), plan);
    });

    test('a delayed row is reported by its due time; a paused queue claims nothing and reports NULL', async () => {
      const table = `cm_one_reported_due_${mode.replace('-', '_')}`;
      await migratedOutbox(newOutbox, db.pool, table, { dlqTable: false });
      await db.pool.query(
        `INSERT INTO ${table} (queue, payload, next_attempt_at) VALUES ('d', '\\x00', now() + interval '1 hour'), ('p', '\\x00', now())`,
      );
      await db.pool.query(`INSERT INTO ${table}_paused (queue) VALUES ('p')`);
      const sql = sqlOf(table);
      const claim = (queue: string) =>
        inOpenTransaction(async (c) => (await c.query<Reported>(sql.claimOneReported.text, args(queue, LIMIT))).rows);
      const delayed = await claim('d');
      assert.equal(claimedOnly(delayed).length, 0);
      assert.deepEqual(reportsOf(delayed), [['d', 1]]);
      const dueMs = Number(delayed[0]?.report_due_ms);
      assert.ok(dueMs > 3_500_000 && dueMs <= 3_600_000, `due in about an hour (${dueMs} ms)`);
      const paused = await claim('p');
      assert.equal(claimedOnly(paused).length, 0);
      assert.deepEqual(reportsOf(paused), [['p', null]]);
      assert.deepEqual(reportsOf(await claim('empty')), [['empty', null]]);
    });
  });
}
