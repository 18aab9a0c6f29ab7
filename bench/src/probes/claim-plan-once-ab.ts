/**
 * The lease-mode claims over several queues planned per execution (the owned pools'
 * force_custom_plan) against planned once (statement.ts plannedOnce: the generic-plan prelude in the
 * same round trip), interleaved in one process (issue 18, b, round five). Per queue count, a fresh
 * database with 20,000 ready rows spread evenly; one connection set as txoutbox's own; cycles of
 * claim (100 rows, through StatementRunner.decoded as the subscription runs it, wall clock on the
 * client: planning, the prelude and the round trip included) then the ack of the claimed rows, the
 * variants in rotated order each cycle. Prints the median and minimum claim time per variant.
 *
 *   flock /tmp/txoutbox-bench.lock node --import tsx bench/src/probes/claim-plan-once-ab.ts [counts=10,100,1000] [cycles=40]
 */
import { randomUUID } from 'node:crypto';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { Outbox } from '../../../src/index.js';
import { resolveSchemaNames } from '../../../src/schema/schema-names.js';
import { buildSubscriberSql } from '../../../src/subscriber/sql.js';
import { CUSTOM_PLANS } from '../../../src/util/owned-pool.js';
import type { Statement } from '../../../src/util/statement.js';
import { StatementRunner } from '../../../src/util/statement-runner.js';
import { queueNames } from '../scale/drain.js';
import { loadOutboxBacklog } from '../scale/tables.js';

const counts = (process.argv[2] ?? '10,100,1000').split(',').map(Number);
const cycles = Number(process.argv[3] ?? '40');
const WARMUP = 3;
const sql = buildSubscriberSql(resolveSchemaNames('txoutbox.outbox', undefined));
const perExecution = (s: Statement): Statement => ({ name: `${s.name}_custom`, text: s.text, textRows: true });
const plannedOnce = (s: Statement): Statement => ({ name: `${s.name}_once`, text: s.text, textRows: true, plannedOnce: true });
/** [label, statement, listed queues: all, or one]. */
const variants: [string, Statement, 'all' | 'one'][] = [
  ['claimMany, planned per execution', perExecution(sql.claimMany), 'all'],
  ['claimMany, planned once', plannedOnce(sql.claimMany), 'all'],
  ['claimOneReported, planned per execution', perExecution(sql.claimOneReported), 'one'],
  ['claimOneReported, planned once', plannedOnce(sql.claimOneReported), 'one'],
];
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

const server = await startEmbeddedPostgres();
const lines: string[] = [];
try {
  for (const count of counts) {
    const url = await server.createDatabase(`plan_once_${count}`);
    const outbox = new Outbox({ connectionString: url });
    await outbox.migrate();
    await outbox.stop();
    const queues = queueNames(count);
    await loadOutboxBacklog(url, { ready: 20_000, queues }, {});
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    pool.on('connect', (client) => void client.query(CUSTOM_PLANS));
    const runner = new StatementRunner(pool, true, 30_000);
    const times = new Map<string, number[]>();
    for (let cycle = 0; cycle < cycles + WARMUP; cycle += 1) {
      for (let v = 0; v < variants.length; v += 1) {
        const variant = variants[(cycle + v) % variants.length];
        const queue = queues[(cycle * variants.length + v) % queues.length];
        if (variant === undefined || queue === undefined) throw new Error('no variant or queue');
        const [label, statement, listed] = variant;
        const started = performance.now();
        const rows = await runner.decoded(
          statement,
          [listed === 'all' ? queues : queue, 30_000, 100, randomUUID(), '{}'],
          (fields) => fields[0],
        );
        const ms = performance.now() - started;
        const ids = rows.filter((id) => id !== null);
        await pool.query('DELETE FROM txoutbox.outbox WHERE id = ANY($1::bigint[])', [ids]);
        if (cycle >= WARMUP) times.set(label, [...(times.get(label) ?? []), ms]);
      }
    }
    await pool.end();
    for (const [label, xs] of times) {
      lines.push(`| ${count} | ${label} | ${median(xs).toFixed(3)} | ${Math.min(...xs).toFixed(3)} |`);
    }
  }
} finally {
  await server.stop();
}
console.log(`cycles ${cycles} (after ${WARMUP} warm-up)\n| queues | claim | median ms | min ms |\n|--:|---|--:|--:|`);
for (const line of lines) console.log(line);
