/**
 * What the lease-mode claims over several queues cost PostgreSQL planned per execution (custom
 * plans, the owned pools' force_custom_plan) against one cached generic plan under the generic-plan
 * settings (util/generic-plan.ts, as statement.ts plannedOnce runs claimMany): planning and
 * execution of one claim (EXPLAIN (ANALYZE, SUMMARY) EXECUTE of the prepared statement, in a
 * transaction rolled back), by the number of queues listed (issue 18, b, round five). The table is
 * claim-statement-cost.ts's: 100 queues × 200 rows, the first half of every queue deleted, not
 * vacuumed. Custom and generic alternate per repetition. Prints medians.
 *
 *   flock /tmp/txoutbox-bench.lock node --import tsx bench/src/probes/claim-generic-cost.ts [reps=15]
 */
import { randomUUID } from 'node:crypto';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { Outbox } from '../../../src/index.js';
import { resolveSchemaNames } from '../../../src/schema/schema-names.js';
import { buildSubscriberSql } from '../../../src/subscriber/sql.js';
import { GENERIC_PLAN_SET_LOCAL } from '../../../src/util/generic-plan.js';
import { queueNames } from '../scale/drain.js';
import { loadOutboxBacklog } from '../scale/tables.js';

const reps = Number(process.argv[2] ?? '15');
const sql = buildSubscriberSql(resolveSchemaNames('txoutbox.outbox', undefined));
const TYPES = 'text[], double precision, int, uuid, bigint[]';
const ONE_TYPES = 'text, double precision, int, uuid, bigint[]';

const server = await startEmbeddedPostgres();
const url = await server.createDatabase('claim_generic');
const outbox = new Outbox({ connectionString: url });
await outbox.migrate();
await outbox.stop();
const queues = queueNames(100);
await loadOutboxBacklog(url, { ready: 20_000, queues }, {});
const client = new pg.Client({ connectionString: url, options: '-c plan_cache_mode=force_custom_plan' });
await client.connect();
await client.query('ALTER TABLE txoutbox.outbox SET (autovacuum_enabled = off)');
await client.query(`DELETE FROM txoutbox.outbox WHERE id IN (
  SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY queue ORDER BY next_attempt_at, id) AS r FROM txoutbox.outbox) AS x WHERE r <= 100)`);
await client.query(`PREPARE many(${TYPES}) AS ${sql.claimMany.text}`);
await client.query(`PREPARE one(${ONE_TYPES}) AS ${sql.claimOneReported.text}`);
// claimOne (a single-queue subscription's claim, planned per execution as shipped): for comparison.
await client.query(`PREPARE single(${ONE_TYPES}) AS ${sql.claimOne.text}`);

interface Explained {
  'Planning Time': number;
  'Execution Time': number;
}
const samples = new Map<string, { plan: number[]; exec: number[] }>();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const cases: [string, number][] = [
  ['claimOne (single-queue subscription)', 0],
  ['claimOneReported, 1 listed', 1],
  ['claimMany, 2 listed', 2],
  ['claimMany, 5 listed', 5],
  ['claimMany, 10 listed', 10],
  ['claimMany, 50 listed', 50],
  ['claimMany, 100 listed', 100],
];
try {
  for (let rep = 0; rep < reps; rep += 1) {
    for (const [label, k] of cases) {
      const modes = rep % 2 === 0 ? (['custom', 'generic'] as const) : (['generic', 'custom'] as const);
      for (const mode of modes) {
        const listed = queues.slice((rep * 7) % (100 - k + 1), ((rep * 7) % (100 - k + 1)) + Math.max(k, 1));
        const first = k <= 1 ? `'${listed[0]}'` : `'{${listed.join(',')}}'`;
        const prepared = k === 0 ? 'single' : k === 1 ? 'one' : 'many';
        await client.query(mode === 'generic' ? `BEGIN; ${GENERIC_PLAN_SET_LOCAL}` : 'BEGIN');
        const { rows } = await client.query<{ 'QUERY PLAN': [Explained] }>(
          `EXPLAIN (ANALYZE, SUMMARY, FORMAT JSON) EXECUTE ${prepared}(${first}, 30000, 100, '${randomUUID()}', '{}')`,
        );
        await client.query('ROLLBACK');
        const top = rows[0]?.['QUERY PLAN'][0];
        if (top === undefined) throw new Error('EXPLAIN returned no plan');
        const key = `${label}|${mode}`;
        const s = samples.get(key) ?? { plan: [], exec: [] };
        // The first generic execution plans it: every later one reuses that plan.
        if (rep > 0) {
          s.plan.push(top['Planning Time']);
          s.exec.push(top['Execution Time']);
        }
        samples.set(key, s);
      }
    }
  }
} finally {
  await client.end();
  await server.stop();
}
console.log(
  '| claim | custom: planning ms | execution | sum | generic: planning ms | execution | sum |\n|---|--:|--:|--:|--:|--:|--:|',
);
for (const [label] of cases) {
  const cells = (['custom', 'generic'] as const).map((mode) => {
    const s = samples.get(`${label}|${mode}`) ?? { plan: [], exec: [] };
    const sums = s.plan.map((p, i) => p + (s.exec[i] ?? Number.NaN));
    return `${median(s.plan).toFixed(3)} | ${median(s.exec).toFixed(3)} | ${median(sums).toFixed(3)}`;
  });
  console.log(`| ${label} | ${cells.join(' | ')} |`);
}
