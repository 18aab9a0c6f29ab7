import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';

import pg from 'pg';

import { resolveSchemaNames } from '../../src/schema/schema-names.js';
import { buildSubscriberSql, pairValues } from '../../src/subscriber/sql.js';
import { warnAboutGenericPlans } from '../../src/util/owned-pool.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { type PlanNode, scans } from '../support/plan-scans.js';
import { publishCommitted } from '../support/publish.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { TestLogger } from '../support/test-logger.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

describe('prepared statements and a table that grows suddenly', () => {
  test('the claim and the ack are planned for the table as it is now, not as it was when they were prepared (a backlog after a quiet spell)', async () => {
    // Reproduction: statements prepared while the table was tiny and analyzed get a cached
    // generic plan of sequential scans (Postgres switches to it after five executions when it is
    // no dearer than the custom ones); the table then grows by a backlog and every claim and ack
    // scans it — 1.3 s per claim and 0.8 s per ack at a million rows, until autoanalyze replans.
    const table = 'plan_growth';
    const outbox = newOutbox({ connectionString: db.url, poolSize: 1, table });
    await outbox.migrate();
    await db.pool.query(
      `INSERT INTO ${table} (queue, payload, next_attempt_at) VALUES ('idle', '\\x00', now() + interval '1 day')`,
    );
    await db.pool.query(`ANALYZE ${table}`);
    let handled = 0;
    outbox.subscribe(
      'q',
      () => {
        handled += 1;
      },
      { fetchBatchSize: 1, ...FAST_POLL },
    );
    outbox.start();
    // Ten claims and acks on the one connection of the Outbox's pool: past the five custom plans.
    for (let n = 1; n <= 10; n += 1) {
      await publishCommitted(outbox, db.pool, 'q', [{ n }]);
      await waitFor(() => handled === n, { what: `row ${n} handled` });
    }
    // The backlog: due tomorrow (the idle subscriber leaves it alone) and in another queue.
    await db.pool.query(
      `INSERT INTO ${table} (queue, payload, next_attempt_at) SELECT 'q', '\\x00'::bytea, now() + interval '1 day' FROM generate_series(1, 50000)
       UNION ALL SELECT 'other', '\\x00'::bytea, now() FROM generate_series(1, 50000)`,
    );

    // On the Outbox's one connection (poolSize 1), where the subscriber prepared them.
    const session = outbox.internals.pool;
    const sql = buildSubscriberSql(resolveSchemaNames(table, undefined));
    const plan = async (name: string, values: string): Promise<string[]> => {
      const { rows } = await session.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
        `EXPLAIN (FORMAT JSON) EXECUTE ${name}(${values})`,
      );
      return scans(rows[0]!['QUERY PLAN'][0].Plan);
    };
    const [ids, tokens] = pairValues([{ record: { id: '1' }, token: randomUUID() }]);
    const claim = await plan(sql.claimOne.name, `'q', 60000, 10, '${randomUUID()}', '{}'`);
    const ack = await plan(sql.ackMissed.name, `'${ids}', '${tokens}'`);
    for (const [statement, found] of [
      ['claim', claim],
      ['ack', ack],
    ] as const) {
      assert.ok(found.length > 0, `${statement}: the prepared statement exists on the session`);
      assert.deepEqual(
        found.filter((s) => s.startsWith('Seq Scan') && s.endsWith(` on ${table}`)),
        [],
        `${statement} scans the whole table: ${found.join(', ')}`,
      );
    }
  });

  test('a pool passed in that plans the default way gets one warning with the fix; one set up as advised gets none', async () => {
    const plain = new pg.Pool({ connectionString: db.url, max: 2 });
    const advised = new pg.Pool({ connectionString: db.url, max: 2, options: '-c plan_cache_mode=force_custom_plan' });
    db.onCleanup(() => Promise.all([plain.end(), advised.end()]).then(() => undefined));
    const logger = new TestLogger();
    const warnings = () => logger.messages('warn').filter((m) => m.includes('plan_cache_mode = auto'));
    await warnAboutGenericPlans(advised, logger);
    assert.deepEqual(warnings(), []);
    await warnAboutGenericPlans(plain, logger);
    assert.equal(warnings().length, 1);
    assert.match(warnings()[0] ?? '', /force_custom_plan/);

    // An Outbox on the plain pool says it once its first subscription starts.
    const outbox = newOutbox({ pool: plain, table: 'plan_plain' });
    await outbox.migrate();
    outbox.subscribe('q', () => undefined, FAST_POLL);
    outbox.start();
    await waitFor(() => newOutbox.logger.messages('warn').some((m) => m.includes('plan_cache_mode = auto')), {
      what: "the Outbox's warning",
    });
  });
});
