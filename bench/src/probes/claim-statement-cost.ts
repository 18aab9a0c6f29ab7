/**
 * What one lease-mode claim statement costs by the number of queues it lists (issue 18, b): planning
 * and execution (EXPLAIN ANALYZE, BUFFERS, SUMMARY) of `claimMany` over K of 100 queues, and of
 * `claimOneReported` and `claimOne` (K = 1), this checkout's src/ against another build's (`<before dist>`),
 * interleaved. The table is workload b at 100 queues: 200 rows each, the first half of every queue
 * already claimed and deleted (committed, not vacuumed: the dead index entries a drain leaves at the
 * front of each queue's range). Each EXPLAIN runs in a transaction rolled back. Prints medians.
 *
 *   flock /tmp/txoutbox-bench.lock node --import tsx bench/src/probes/claim-statement-cost.ts /tmp/qcost-main/dist [reps=15]
 */
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { Outbox } from '../../../src/index.js';
import { resolveSchemaNames } from '../../../src/schema/schema-names.js';
import { buildSubscriberSql } from '../../../src/subscriber/sql.js';
import { queueNames } from '../scale/drain.js';
import { loadOutboxBacklog } from '../scale/tables.js';

const [beforeDist, repsArg] = process.argv.slice(2);
if (beforeDist === undefined) throw new Error('usage: claim-statement-cost.ts <before dist dir> [reps]');
const beforeSql = (await import(pathToFileURL(`${beforeDist}/subscriber/sql.js`).href)) as {
  buildSubscriberSql: typeof buildSubscriberSql;
};
const reps = Number(repsArg ?? '15');
const names = resolveSchemaNames('txoutbox.outbox', undefined);
const variants = [
  ['before', beforeSql.buildSubscriberSql(names)],
  ['after', buildSubscriberSql(names)],
] as const;

interface Explained {
  'Planning Time': number;
  'Execution Time': number;
  Plan: { 'Shared Hit Blocks'?: number; 'Shared Read Blocks'?: number; 'Actual Rows'?: number };
}

const server = await startEmbeddedPostgres();
const url = new URL(server.connectionString);
url.pathname = '/claim_cost';
const admin = new pg.Client({ connectionString: server.connectionString });
await admin.connect();
await admin.query('CREATE DATABASE claim_cost');
const outbox = new Outbox({ connectionString: url.toString() });
await outbox.migrate();
await outbox.stop();
const queues = queueNames(100);
await loadOutboxBacklog(url.toString(), { ready: 20_000, queues }, {});
const client = new pg.Client({ connectionString: url.toString(), options: '-c plan_cache_mode=force_custom_plan' });
await client.connect();
await client.query('ALTER TABLE txoutbox.outbox SET (autovacuum_enabled = off)');
// Half of every queue drained: claimed, then deleted, no vacuum.
await client.query(`DELETE FROM txoutbox.outbox WHERE id IN (
  SELECT id FROM (SELECT id, row_number() OVER (PARTITION BY queue ORDER BY next_attempt_at, id) AS r FROM txoutbox.outbox) AS x WHERE r <= 100)`);

const samples = new Map<string, { plan: number[]; exec: number[]; buffers: number[]; rows: number[] }>();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const cases: [string, number, 'single' | 'one' | 'many'][] = [
  ['a 1-queue subscription (claimOne)', 1, 'single'],
  ['1 listed (claimMany)', 1, 'many'],
  ['1 listed (claimOneReported)', 1, 'one'],
  ['5 listed', 5, 'many'],
  ['10 listed', 10, 'many'],
  ['50 listed', 50, 'many'],
  ['100 listed', 100, 'many'],
];
try {
  for (let rep = 0; rep < reps; rep += 1) {
    for (const [label, k, shape] of cases) {
      for (const [name, sql] of variants) {
        const statement =
          shape === 'single'
            ? sql.claimOne
            : shape === 'one'
              ? 'claimOneReported' in sql
                ? sql.claimOneReported
                : undefined
              : sql.claimMany;
        if (statement === undefined) continue;
        const listed = queues.slice((rep * 7) % (100 - k + 1), ((rep * 7) % (100 - k + 1)) + k);
        await client.query('BEGIN');
        const { rows } = await client.query<{ 'QUERY PLAN': [Explained] }>(
          `EXPLAIN (ANALYZE, BUFFERS, SUMMARY, FORMAT JSON) ${statement.text}`,
          [shape === 'many' ? listed : listed[0], 30_000, 100, randomUUID(), '{}'],
        );
        await client.query('ROLLBACK');
        const top = rows[0]?.['QUERY PLAN'][0];
        if (top === undefined) throw new Error('EXPLAIN returned no plan');
        const key = `${label} ${name}`;
        const s = samples.get(key) ?? { plan: [], exec: [], buffers: [], rows: [] };
        s.plan.push(top['Planning Time']);
        s.exec.push(top['Execution Time']);
        s.buffers.push((top.Plan['Shared Hit Blocks'] ?? 0) + (top.Plan['Shared Read Blocks'] ?? 0));
        s.rows.push(top.Plan['Actual Rows'] ?? 0);
        samples.set(key, s);
      }
    }
  }
} finally {
  await client.end();
  await admin.end();
  await server.stop();
}
console.log('| claim | build | planning ms | execution ms | buffers | rows returned |\n|---|---|--:|--:|--:|--:|');
for (const [key, s] of samples) {
  const [label, name] = [key.slice(0, key.lastIndexOf(' ')), key.slice(key.lastIndexOf(' ') + 1)];
  console.log(
    `| ${label} | ${name} | ${median(s.plan).toFixed(2)} | ${median(s.exec).toFixed(2)} | ${median(s.buffers)} | ${median(s.rows)} |`,
  );
}
