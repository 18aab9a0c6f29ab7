/**
 * Why one subscription over many queues claims slower (workload b): EXPLAIN (ANALYZE, BUFFERS) of
 * the claim statement the subscription runs, over the same backlog as b (`rows` spread evenly over
 * N queues), for N = 1, 10, 100, 1000. Each EXPLAIN runs in a transaction rolled back (it executes
 * the UPDATE). Prints, per N: execution time, buffers touched, and the rows the locking scans
 * locked (rows × loops of the LockRows nodes: about fetchBatchSize since the issue-18 rework; before
 * it, each queue's walk locked up to fetchBatchSize rows and the outer LIMIT kept 100).
 *
 *   node --import tsx bench/src/scale/explain-claim.ts [rows=20000]
 */
import { randomUUID } from 'node:crypto';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { Outbox } from '../../../src/index.js';
import { resolveSchemaNames } from '../../../src/schema/schema-names.js';
import { buildSubscriberSql } from '../../../src/subscriber/sql.js';
import { queueNames } from './drain.js';
import { FETCH_BATCH_SIZE } from './sizes.js';
import { loadOutboxBacklog } from './tables.js';

interface PlanNode {
  'Node Type': string;
  'Actual Rows'?: number;
  'Actual Loops'?: number;
  'Shared Hit Blocks'?: number;
  'Shared Read Blocks'?: number;
  Plans?: PlanNode[];
}

/** Rows that went through LockRows nodes (rows × loops): the rows the claim locked. */
function lockedRows(node: PlanNode): number {
  const own = node['Node Type'] === 'LockRows' ? (node['Actual Rows'] ?? 0) * (node['Actual Loops'] ?? 1) : 0;
  return own + (node.Plans ?? []).reduce((sum, child) => sum + lockedRows(child), 0);
}

const rows = Number(process.argv[2] ?? 20_000);
const server = await startEmbeddedPostgres();
const admin = new pg.Client({ connectionString: server.connectionString });
await admin.connect();
const sql = buildSubscriberSql(resolveSchemaNames('txoutbox.outbox', undefined));
try {
  for (const count of [1, 10, 100, 1000]) {
    const database = `explain_${count}`;
    await admin.query(`DROP DATABASE IF EXISTS ${database}`);
    await admin.query(`CREATE DATABASE ${database}`);
    const url = new URL(server.connectionString);
    url.pathname = `/${database}`;
    const outbox = new Outbox({ connectionString: url.toString() });
    await outbox.migrate();
    await outbox.stop();
    const queues = queueNames(count);
    await loadOutboxBacklog(url.toString(), { ready: rows, queues }, {});
    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    try {
      const statement = count === 1 ? sql.claimOne : sql.claimMany;
      const values = [count === 1 ? queues[0] : queues, 30_000, FETCH_BATCH_SIZE, randomUUID(), '{}'];
      // Warm the cache and the plan once, then measure.
      for (let i = 0; i < 2; i += 1) {
        await client.query('BEGIN');
        const { rows: plan } = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode; 'Execution Time': number }] }>(
          `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${statement.text}`,
          values,
        );
        await client.query('ROLLBACK');
        const top = plan[0]?.['QUERY PLAN'][0];
        if (i === 1 && top !== undefined) {
          console.log(
            `${count} queue(s), ${rows / count} rows each: ${top['Execution Time'].toFixed(2)} ms, ` +
              `shared buffers hit ${top.Plan['Shared Hit Blocks'] ?? 0} read ${top.Plan['Shared Read Blocks'] ?? 0}, ` +
              `rows locked ${lockedRows(top.Plan)}, rows claimed ${top.Plan['Actual Rows'] ?? '?'}`,
          );
        }
      }
    } finally {
      await client.end();
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    }
  }
} finally {
  await admin.end();
  await server.stop();
}
