import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';

import type pg from 'pg';

import { resolveSchemaNames } from '../../src/schema/schema-names.js';
import { buildSubscriberSql } from '../../src/subscriber/sql.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { migratedOutbox } from '../support/subscriber-setup.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

const TABLE = 'c_plan';
const BACKLOG = 45_000;
const LIMIT = 100;
const LEASE_TTL_MS = 60_000;
const sql = buildSubscriberSql(resolveSchemaNames(TABLE, false));

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  Plans?: PlanNode[];
}

function nodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)];
}

/** Runs `fn` in a transaction that is always rolled back: EXPLAIN ANALYZE of the claim really claims. */
async function rolledBack<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    return await fn(client);
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}

/** 45,000 ready rows in queues a and b (interleaved by age), leased rows, future rows, another queue. */
async function loadBacklog(): Promise<void> {
  await migratedOutbox(newOutbox, db.pool, TABLE, { dlqTable: false });
  await db.pool.query(
    `INSERT INTO ${TABLE} (queue, payload, next_attempt_at)
     SELECT CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, '\\x00'::bytea, now() - interval '1 hour' + g * interval '1 millisecond'
     FROM generate_series(1, ${BACKLOG}) AS g`,
  );
  await db.pool.query(
    `INSERT INTO ${TABLE} (queue, payload, next_attempt_at, acquired_token, acquired_at)
     SELECT CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, '\\x00'::bytea, now(), gen_random_uuid(), now()
     FROM generate_series(1, 5000) AS g`,
  );
  await db.pool.query(
    `INSERT INTO ${TABLE} (queue, payload, next_attempt_at)
     SELECT 'a', '\\x00'::bytea, now() + interval '1 day' FROM generate_series(1, 5000)`,
  );
  await db.pool.query(`INSERT INTO ${TABLE} (queue, payload) SELECT 'c', '\\x00'::bytea FROM generate_series(1, 5000)`);
  await db.pool.query(`ANALYZE ${TABLE}`);
}

async function explainClaimMany(client: pg.PoolClient, mode: 'custom' | 'generic'): Promise<PlanNode> {
  await client.query(`SET LOCAL plan_cache_mode = force_${mode}_plan`);
  await client.query(`PREPARE claim_plan(text[], double precision, int, uuid, bigint[]) AS ${sql.claimMany.text}`);
  try {
    const { rows } = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
      `EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim_plan('{a,b}', ${LEASE_TTL_MS}, ${LIMIT}, '${randomUUID()}', '{}')`,
    );
    return rows[0]!['QUERY PLAN'][0].Plan;
  } finally {
    await client.query('DEALLOCATE claim_plan');
  }
}

describe('the multi-queue claim (claimMany)', () => {
  test(`a ${LIMIT}-row claim over two queues with ${BACKLOG.toLocaleString('en')} ready rows reads about the limit, not the backlog`, async () => {
    await loadBacklog();
    for (const mode of ['custom', 'generic'] as const) {
      const plan = await rolledBack((client) => explainClaimMany(client, mode));
      const all = nodes(plan);
      const seqScans = all.filter((n) => n['Node Type'] === 'Seq Scan' && n['Relation Name'] === TABLE);
      assert.deepEqual(seqScans, [], `${mode} plan: no Seq Scan of the outbox`);
      for (const node of all) {
        const rows = (node['Actual Rows'] ?? 0) * (node['Actual Loops'] ?? 1);
        // Two queues, each bounded by the limit before the merge.
        assert.ok(
          rows <= 2 * LIMIT,
          `${mode} plan: ${node['Node Type']}${node['Relation Name'] === undefined ? '' : ` on ${node['Relation Name']}`} produced ${rows} rows, more than 2 × ${LIMIT}`,
        );
      }
      // And one report row per listed queue (queue-schedule.ts).
      assert.equal(plan['Actual Rows'], LIMIT + 2, `${mode} plan: the claim returned ${LIMIT} rows and 2 reports`);
    }
  });

  test('claims the oldest ready rows of the listed queues; concurrent claims skip each other (SKIP LOCKED), none twice, none lost', async () => {
    const table = 'c_fifo';
    const fifoSql = buildSubscriberSql(resolveSchemaNames(table, false));
    await migratedOutbox(newOutbox, db.pool, table, { dlqTable: false });
    // 30 ready rows in a and b, interleaved by age; c is not listed; one row of a is leased, one is due later.
    await db.pool.query(
      `INSERT INTO ${table} (queue, payload, next_attempt_at)
       SELECT CASE WHEN g % 3 = 0 THEN 'b' ELSE 'a' END, int4send(g), now() - interval '1 hour' + g * interval '1 second'
       FROM generate_series(1, 30) AS g`,
    );
    await db.pool.query(
      `INSERT INTO ${table} (queue, payload, next_attempt_at) VALUES ('c', '\\x00', now() - interval '2 hours')`,
    );
    await db.pool.query(`INSERT INTO ${table} (queue, payload, next_attempt_at) VALUES ('a', '\\x00', now() + interval '1 day')`);
    // The claim returns the payload as base64 text (sql.ts claimedColumns).
    type Row = { id: string; queue: string; payload: string };
    const order = (rows: Row[]): number[] =>
      rows.map((r) => Buffer.from(r.payload, 'base64').readInt32BE(0)).sort((x, y) => x - y);
    // Without the report rows (id NULL, one per listed queue: queue-schedule.ts).
    const claim = async (client: pg.PoolClient, limit: number) => {
      const result = await client.query<Row>(fifoSql.claimMany.text, [['a', 'b'], LEASE_TTL_MS, limit, randomUUID(), []]);
      return { rows: result.rows.filter((r) => r.id !== null) };
    };

    const first = await db.pool.connect();
    const second = await db.pool.connect();
    try {
      await first.query('BEGIN');
      const firstRows = (await claim(first, 10)).rows;
      assert.deepEqual(order(firstRows), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'the 10 oldest of a and b');
      // While the first claim's transaction holds its locks, a second claim skips those rows and
      // takes the next ones instead of waiting or returning them twice.
      // While the first claim's transaction holds its locks, a second claim skips those rows
      // instead of waiting or returning them twice. (Claims run in autocommit, so in the
      // subscriber the locks last only as long as the statement.)
      const secondRows = (await claim(second, 10)).rows;
      assert.equal(secondRows.length, 10);
      const firstIds = new Set(firstRows.map((r) => r.id));
      assert.ok(
        secondRows.every((r) => !firstIds.has(r.id)),
        'no row claimed twice',
      );
      await first.query('COMMIT');
      // Every other ready row of a and b comes next; none is lost, c and the future row stay.
      const thirdRows = (await claim(second, 100)).rows;
      assert.deepEqual(
        order([...firstRows, ...secondRows, ...thirdRows]),
        Array.from({ length: 30 }, (_, i) => i + 1),
      );
      // Expired leases come back through the same statement (a TTL of 0 expires every lease).
      const expired = (await second.query<Row>(fifoSql.claimMany.text, [['a', 'b'], 0, 100, randomUUID(), []])).rows.filter(
        (r) => r.id !== null,
      );
      assert.equal(expired.length, 30, 'every leased row of a and b is re-claimed, the future one is not');
    } finally {
      first.release();
      second.release();
    }
  });
});

describe('the claim commits asynchronously, for its own transaction only', () => {
  test('claimed rows are leased, and the connection keeps synchronous_commit = on afterwards', async () => {
    const table = 'c_async';
    const asyncSql = buildSubscriberSql(resolveSchemaNames(table, false));
    await migratedOutbox(newOutbox, db.pool, table, { dlqTable: false });
    await db.pool.query(`INSERT INTO ${table} (queue, payload) SELECT 'q', '\\x00'::bytea FROM generate_series(1, 3)`);
    const client = await db.pool.connect();
    try {
      // The test server runs with synchronous_commit = off; this session has it on, as production does.
      await client.query('SET synchronous_commit = on');
      const token = randomUUID();
      const claimed = await client.query<{ id: string }>(asyncSql.claimOne.text, ['q', LEASE_TTL_MS, 10, token, []]);
      assert.equal(claimed.rowCount, 3);
      const { rows } = await client.query<{ setting: string; leased: string }>(
        `SELECT current_setting('synchronous_commit') AS setting,
                (SELECT count(*) FROM ${table} WHERE acquired_token = $1::uuid)::text AS leased`,
        [token],
      );
      // set_config(…, is_local = true) ends with the claim's implicit transaction: a pooled
      // connection handed to the caller's code next must not commit asynchronously.
      assert.deepEqual(rows[0], { setting: 'on', leased: '3' });
      // An empty claim (nothing ready) leaves the setting alone as well.
      await client.query(asyncSql.claimOne.text, ['q', LEASE_TTL_MS, 10, randomUUID(), []]);
      assert.equal((await client.query<{ s: string }>(`SELECT current_setting('synchronous_commit') AS s`)).rows[0]!.s, 'on');
    } finally {
      await client.query('RESET synchronous_commit');
      client.release();
    }
  });
});
