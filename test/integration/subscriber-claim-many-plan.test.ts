import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { resolveSchemaNames } from '../../src/schema/schema-names.js';
import { buildSubscriberSql } from '../../src/subscriber/sql.js';
import { GENERIC_PLAN_SET_LOCAL } from '../../src/util/generic-plan.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { type PlanNode, scans } from '../support/plan-scans.js';
import { publishCommitted } from '../support/publish.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { waitFor } from '../support/wait-for.js';

// Issue 18, b: the lease-mode claims over several queues cost 0.5–1.1 ms to plan, as much as they
// cost to run; they are planned once per connection (statement.ts plannedOnce), as index scans.
const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

describe('lease mode: claimOne, claimMany and claimOneReported use one generic plan of index scans', () => {
  test('planned once per connection on a pool that plans every execution, index scans when planned on a tiny table, the session’s settings kept', async () => {
    const table = 'cm_plan_once';
    // One connection: the statements prepared on it are the subscription's.
    const outbox = newOutbox({ connectionString: db.url, poolSize: 1, table });
    await outbox.migrate();
    await db.pool.query(`INSERT INTO ${table} (queue, payload, next_attempt_at) VALUES ('a', '\\x00', now() + interval '1 day')`);
    await db.pool.query(`ANALYZE ${table}`);
    const sql = buildSubscriberSql(resolveSchemaNames(table, undefined));
    const session = outbox.internals.pool;
    const plans = async (name = sql.claimMany.name) =>
      (
        await session.query<{ generic: string; custom: string }>(
          'SELECT generic_plans::text AS generic, custom_plans::text AS custom FROM pg_prepared_statements WHERE name = $1',
          [name],
        )
      ).rows[0];
    // Idle queues: the safety net (FAST_POLL) lists all three again and again, each time claimMany.
    let handled = 0;
    outbox.subscribe(
      ['a', 'b', 'c'],
      () => {
        handled += 1;
      },
      { name: 'plan', ...FAST_POLL },
    );
    // A subscription over one queue claims with claimOne.
    outbox.subscribe('d', () => undefined, { name: 'plan-one', ...FAST_POLL });
    outbox.start();
    const runs = async () => {
      const counts = await plans();
      return Number(counts?.generic ?? 0) + Number(counts?.custom ?? 0);
    };
    await waitFor(async () => (await runs()) >= 3, { what: 'three claims over the three queues' });
    assert.equal((await plans())?.custom, '0', 'no claim was planned for its parameters');
    await waitFor(async () => Number((await plans(sql.claimOne.name))?.generic ?? 0) >= 2, { what: 'two claims of d' });
    assert.equal((await plans(sql.claimOne.name))?.custom, '0', 'claimOne: generic');
    // A publish wakes a alone: the next claim lists a only (claimOneReported), still on the tiny table.
    await publishCommitted(outbox, db.pool, 'a', [{ n: 1 }]);
    await waitFor(() => handled === 1, { what: 'the row in a' });
    // At least once: the ack makes a's next claim list it alone again, maybe before this reads.
    const reported = await plans(sql.claimOneReported.name);
    assert.ok(Number(reported?.generic) >= 1, `claimOneReported ran: ${JSON.stringify(reported)}`);
    assert.equal(reported?.custom, '0', 'claimOneReported: generic');
    const { rows: settings } = await session.query<{ mode: string; seq: string; bitmap: string }>(
      `SELECT current_setting('plan_cache_mode') AS mode, current_setting('enable_seqscan') AS seq,
              current_setting('enable_bitmapscan') AS bitmap`,
    );
    assert.deepEqual(
      settings[0],
      { mode: 'force_custom_plan', seq: 'on', bitmap: 'on' },
      'the session’s own settings between claims',
    );

    // A backlog lands in the queues (the subscription drains it meanwhile): the plan made on the
    // tiny table still walks the indexes.
    await db.pool.query(
      `INSERT INTO ${table} (queue, payload) SELECT (ARRAY['a', 'b', 'c'])[1 + g % 3], '\\x00'::bytea FROM generate_series(1, 60000) AS g`,
    );
    for (const [name, queues] of [
      [sql.claimMany.name, `'{a,b,c}'`],
      [sql.claimOneReported.name, `'a'`],
      [sql.claimOne.name, `'a'`],
    ] as const) {
      const client = await session.connect();
      let found: string[];
      try {
        await client.query(`BEGIN; ${GENERIC_PLAN_SET_LOCAL}`);
        const { rows } = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
          `EXPLAIN (FORMAT JSON) EXECUTE ${name}(${queues}, 60000, 100, '00000000-0000-0000-0000-000000000001', '{}')`,
        );
        found = scans(rows[0]!['QUERY PLAN'][0].Plan);
        await client.query('ROLLBACK');
      } finally {
        client.release();
      }
      const onTable = found.filter((scan) => scan.endsWith(` on ${table}`));
      assert.ok(onTable.length > 0, `${name} reads ${table}: ${found.join(', ')}`);
      assert.deepEqual(
        // The UPDATE's ModifyTable names the table too: only its scans count.
        onTable.filter((scan) => scan.includes('Scan on') && !scan.startsWith('Index')),
        [],
        `${name}: only index scans of ${table}: ${found.join(', ')}`,
      );
      assert.equal((await plans(name))?.custom, '0', 'the EXPLAIN used the cached generic plan too');
    }
  });
});
