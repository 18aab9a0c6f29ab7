/**
 * Which claim statements a drain of workload b sends, and what each costs (issue 18, b, round
 * five): per lease mode and queue count, one drain (this checkout's dist/), then per claim
 * statement its calls, execution and planning per call and per handled message, from
 * pg_stat_statements (track_planning on, reset before each drain).
 *
 *   flock /tmp/txoutbox-bench.lock node --import tsx bench/src/probes/claim-split.ts [counts=1,10,100,1000] [token,row-lock]
 */
import { queueNames, runDrain } from '../scale/drain.js';
import { startServer } from '../server.js';

const counts = (process.argv[2] ?? '1,10,100,1000').split(',').map(Number);
const leases = (process.argv[3] ?? 'token,row-lock').split(',') as ('token' | 'row-lock')[];
/** The claim statements by how they start (claim-many-sql.ts CTE names; sql.ts, row-lock-sql.ts). */
function kind(query: string): string {
  if (query.startsWith('WITH ready_heads')) return 'claimMany';
  if (query.includes('report AS (')) return 'claimOneReported';
  return 'claimOne';
}
const server = await startServer(undefined);
await server.admin.query('ALTER SYSTEM SET pg_stat_statements.track_planning = on');
await server.admin.query('SELECT pg_reload_conf()');
let n = 0;
try {
  console.log(
    '| lease | queues | statement | calls | exec ms/call | plan ms/call | exec µs/msg | plan µs/msg |\n|---|--:|---|--:|--:|--:|--:|--:|',
  );
  for (const lease of leases) {
    for (const count of counts) {
      await server.admin.query('SELECT pg_stat_statements_reset()');
      const run = await runDrain(server, `claim_split_${(n += 1)}`, {
        workload: 'b',
        label: `${count} queues`,
        system: 'txoutbox',
        rep: 1,
        backlog: { ready: 20_000, queues: queueNames(count) },
        measured: 20_000,
        timeoutMs: 120_000,
        quietMs: 0,
        lease,
      });
      const { rows } = await server.admin.query<{ query: string; calls: string; exec: number; plan: number }>(
        `SELECT query, calls::text, total_exec_time AS exec, total_plan_time AS plan FROM pg_stat_statements WHERE query LIKE 'WITH ready%'`,
      );
      const byKind = new Map<string, { calls: number; exec: number; plan: number }>();
      for (const row of rows) {
        const k = byKind.get(kind(row.query)) ?? { calls: 0, exec: 0, plan: 0 };
        byKind.set(kind(row.query), { calls: k.calls + Number(row.calls), exec: k.exec + row.exec, plan: k.plan + row.plan });
      }
      for (const [name, k] of byKind) {
        console.log(
          `| ${lease} | ${count} | ${name} | ${k.calls} | ${(k.exec / k.calls).toFixed(3)} | ${(k.plan / k.calls).toFixed(3)} | ${((k.exec * 1000) / run.messages).toFixed(2)} | ${((k.plan * 1000) / run.messages).toFixed(2)} |`,
        );
      }
    }
  }
} finally {
  await server.stop();
}
