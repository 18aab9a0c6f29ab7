/**
 * What one row-lock claim of 100 rows costs PostgreSQL against a 20,000-row backlog, planning and
 * execution apart (EXPLAIN ANALYZE, inside a transaction that is rolled back), next to raw SQL's
 * claim, and with the lease claim for reference. `node --import tsx bench/src/probes/row-lock-claim-plan.ts`
 */
import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { Outbox } from '../../../src/index.js';
import { DEFAULT_TABLE, resolveSchemaNames } from '../../../src/schema/schema-names.js';
import { buildRowLockSql } from '../../../src/subscriber/row-lock-sql.js';
import { buildSubscriberSql } from '../../../src/subscriber/sql.js';

const server = await startEmbeddedPostgres({});
const url = await server.createDatabase('probe');
const pool = new pg.Pool({ connectionString: url, max: 2 });
const outbox = new Outbox({ pool });
await outbox.migrate();
await pool.query(
  `CREATE TABLE raw_q (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`,
);
const client = await pool.connect();
for (let i = 0; i < 20; i += 1) {
  await client.query('BEGIN');
  await outbox.publishBatch(
    client,
    'bench',
    Array.from({ length: 1000 }, (_, n) => ({ n })),
  );
  await client.query(`INSERT INTO raw_q (payload) SELECT jsonb_build_object('n', g) FROM generate_series(1, 1000) g`);
  await client.query('COMMIT');
}
await client.query('VACUUM ANALYZE txoutbox.outbox');
await client.query('VACUUM ANALYZE raw_q');
await client.query('SET plan_cache_mode = force_custom_plan');
const names = resolveSchemaNames(DEFAULT_TABLE, undefined);
const rl = buildRowLockSql(names);
const lease = buildSubscriberSql(names);
const cases: [string, string, unknown[]][] = [
  ['row-lock claim', rl.claimOne.text, ['bench', 60000, 100, null, null]],
  ['lease claim', lease.claimOne.text, ['bench', 60000, 100, '00000000-0000-0000-0000-000000000001', '{}']],
  [
    'row-lock ready only, no CTE',
    `SELECT o.id::text AS id, o.queue, o.payload, o.headers, o.created_at, o.deliveries_count + 1 AS deliveries_count, o.attempts_count, o.first_attempt_at, o.last_attempt_at, o.timer_id, o.last_exception_type, o.ordering_key
  FROM txoutbox.outbox AS o
  WHERE o.acquired_token IS NULL AND o.queue = $1::text AND o.next_attempt_at <= now() AND NOT EXISTS (SELECT 1 FROM txoutbox.outbox_paused WHERE queue = $1::text)
    AND (o.ordering_key IS NULL OR NOT EXISTS (SELECT 1 FROM txoutbox.outbox AS k WHERE k.queue = o.queue AND k.ordering_key = o.ordering_key AND k.id < o.id))
  ORDER BY o.next_attempt_at, o.id LIMIT $2 FOR UPDATE OF o SKIP LOCKED`,
    ['bench', 100],
  ],
  [
    'row-lock ready only, no key, no pause',
    `SELECT o.id::text AS id, o.queue, o.payload, o.headers, o.created_at, o.deliveries_count + 1 AS deliveries_count, o.attempts_count, o.first_attempt_at, o.last_attempt_at, o.timer_id, o.last_exception_type, o.ordering_key
  FROM txoutbox.outbox AS o
  WHERE o.acquired_token IS NULL AND o.queue = $1::text AND o.next_attempt_at <= now()
  ORDER BY o.next_attempt_at, o.id LIMIT $2 FOR UPDATE SKIP LOCKED`,
    ['bench', 100],
  ],
  ['raw claim', 'SELECT id, payload FROM raw_q ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED', [100]],
];
for (const [label, text, values] of cases) {
  const plans: number[] = [];
  const runs: number[] = [];
  for (let i = 0; i < 30; i += 1) {
    await client.query('BEGIN');
    const { rows } = await client.query<{ 'QUERY PLAN': { 'Planning Time': number; 'Execution Time': number }[] }>(
      `EXPLAIN (ANALYZE, FORMAT JSON) ${text}`,
      values,
    );
    await client.query('ROLLBACK');
    const plan = rows[0]?.['QUERY PLAN'][0];
    if (plan !== undefined && i >= 5) {
      plans.push(plan['Planning Time']);
      runs.push(plan['Execution Time']);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]?.toFixed(3);
  console.log(`${label}: planning ${median(plans)} ms, execution ${median(runs)} ms (median of 25)`);
}
client.release();
await outbox.stop();
await pool.end();
await server.stop();
