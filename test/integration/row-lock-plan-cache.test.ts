import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { resolveSchemaNames } from '../../src/schema/schema-names.js';
import { buildRowLockSql, ROW_LOCK_SETTINGS } from '../../src/subscriber/row-lock-sql.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { type PlanNode, scans } from '../support/plan-scans.js';
import { publishCommitted } from '../support/publish.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

describe("lease: 'row-lock' claims use one generic plan of index scans", () => {
  test('the claim is planned once per connection (generic), made of index scans even when planned on a tiny table, and the settings end with the batch', async () => {
    // A pool txoutbox owns plans every execution (force_custom_plan): a row-lock batch turns that
    // off for its own transaction only (SET LOCAL), with sequential and bitmap scans off so the one
    // generic plan is the index walk whatever the table's size when it was made.
    const table = 'rl_plan_growth';
    const outbox = newOutbox({ connectionString: db.url, poolSize: 1, table });
    await outbox.migrate();
    await db.pool.query(
      `INSERT INTO ${table} (queue, payload, next_attempt_at) VALUES ('idle', '\\x00', now() + interval '1 day')`,
    );
    await db.pool.query(`ANALYZE ${table}`);
    let handled = 0;
    // fetchBatchSize 10, one row at a time: no claim is full, so one loop on the pool's one connection.
    outbox.subscribe(
      'q',
      () => {
        handled += 1;
      },
      { lease: 'row-lock', fetchBatchSize: 10, ...FAST_POLL },
    );
    outbox.start();
    for (let n = 1; n <= 8; n += 1) {
      await publishCommitted(outbox, db.pool, 'q', [{ n }]);
      await waitFor(() => handled === n, { what: `row ${n} handled` });
    }
    const session = outbox.internals.pool;
    const sql = buildRowLockSql(resolveSchemaNames(table, undefined));
    const { rows: prepared } = await session.query<{ generic: string; custom: string }>(
      'SELECT generic_plans AS generic, custom_plans AS custom FROM pg_prepared_statements WHERE name = $1',
      [sql.claimOne.name],
    );
    assert.equal(prepared.length, 1, 'the claim is prepared on the session');
    assert.ok(Number(prepared[0]?.generic) >= 8, `every claim ran the generic plan (${prepared[0]?.generic})`);
    assert.equal(Number(prepared[0]?.custom), 0, 'no claim was planned for its parameters');
    const { rows: settings } = await session.query<{ mode: string; seq: string }>(
      `SELECT current_setting('plan_cache_mode') AS mode, current_setting('enable_seqscan') AS seq`,
    );
    assert.deepEqual(settings[0], { mode: 'force_custom_plan', seq: 'on' }, "the session's own settings outside a batch");

    // A backlog lands (due tomorrow, and in another queue): the plan made on the tiny table still walks the indexes.
    await db.pool.query(
      `INSERT INTO ${table} (queue, payload, next_attempt_at) SELECT 'q', '\\x00'::bytea, now() + interval '1 day' FROM generate_series(1, 50000)
       UNION ALL SELECT 'other', '\\x00'::bytea, now() FROM generate_series(1, 50000)`,
    );
    const client = await session.connect();
    let found: string[];
    try {
      await client.query(`BEGIN; ${ROW_LOCK_SETTINGS}`);
      const { rows } = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
        `EXPLAIN (FORMAT JSON) EXECUTE ${sql.claimOne.name}('q', 60000, 10, NULL, NULL)`,
      );
      found = scans(rows[0]!['QUERY PLAN'][0].Plan);
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    const onTable = found.filter((scan) => scan.endsWith(` on ${table}`));
    assert.ok(onTable.length > 0, `the claim reads ${table}: ${found.join(', ')}`);
    assert.deepEqual(
      onTable.filter((scan) => !scan.startsWith('Index')),
      [],
      `only index scans of ${table}: ${found.join(', ')}`,
    );
    const { rows: after } = await session.query<{ custom: string }>(
      'SELECT custom_plans AS custom FROM pg_prepared_statements WHERE name = $1',
      [sql.claimOne.name],
    );
    assert.equal(Number(after[0]?.custom), 0, 'the EXPLAIN used the cached generic plan too');
  });
});
