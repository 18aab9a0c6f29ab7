/**
 * The queue schedule (issue 18, b; src/subscriber/queue-schedule.ts) against a build without it,
 * interleaved in one run: per queue count and repetition, workload b of the scale bench (20,000
 * ready rows spread evenly over N queues, one subscription over all of them, c16, 100 rows per
 * claim, each drain in a fresh database) with the other build and with this checkout's dist/, the
 * other build first in odd repetitions, second in even ones.
 * Prints per drain the claim statement's pg_stat_statements time per handled message, and per
 * build the median and its ratio to the same build's 1-queue median.
 *
 *   npm run build && git archive <before> | tar -x -C /tmp/before && (cd /tmp/before && ln -s $PWD/node_modules && npx tsc -p tsconfig.build.json)
 *   flock /tmp/txoutbox-bench.lock node --import tsx bench/src/probes/queue-schedule-ab.ts /tmp/before/dist [counts=1,10,100,1000] [reps=3] [lease=token|row-lock]
 *
 * `row-lock`: both builds drain with `lease: 'row-lock'` (the claim counted is the row-lock claim,
 * which also starts `WITH ready`: CLAIM_PATTERNS).
 * `planning` (a fifth argument): pg_stat_statements.track_planning on, and the claim's cost per
 * message is then its execution, its planning (paid per claim on sessions that plan every
 * execution) and the generic-plan prelude a claim may be sent after (CLAIM_PRELUDE_PATTERN); the
 * execution alone is what the scale bench reports as claim µs/msg.
 */
import { pathToFileURL } from 'node:url';

import { txoutbox } from '../library.js';
import { queueNames, runDrain } from '../scale/drain.js';
import { startServer } from '../server.js';

const [beforeDist, countsArg, repsArg, leaseArg, planningArg] = process.argv.slice(2);
if (beforeDist === undefined) throw new Error('usage: queue-schedule-ab.ts <before dist dir> [counts] [reps] [lease]');
const before = (await import(pathToFileURL(`${beforeDist}/index.js`).href)) as typeof txoutbox;
const counts = (countsArg ?? '1,10,100,1000').split(',').map(Number);
const reps = Number(repsArg ?? '3');
const lease = leaseArg ?? 'token';
if (lease !== 'token' && lease !== 'row-lock') throw new Error(`lease: 'token' or 'row-lock', not ${lease}`);
const builds = [
  ['before', before],
  ['after', txoutbox],
] as const;

const planning = planningArg === 'planning';
const server = await startServer(undefined);
if (planning) {
  await server.admin.query('ALTER SYSTEM SET pg_stat_statements.track_planning = on');
  await server.admin.query('SELECT pg_reload_conf()');
}
const rates = new Map<string, number[]>();
const totals = new Map<string, number[]>();
const push = (map: Map<string, number[]>, key: string, value: number) => map.set(key, [...(map.get(key) ?? []), value]);
const results = new Map<string, number[]>();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
let n = 0;
try {
  for (let rep = 1; rep <= reps; rep += 1) {
    for (const count of counts) {
      // The order within a pair moves a drain by a few µs (BENCHMARKS.md, round four): rotated per repetition.
      for (const [name, library] of rep % 2 === 1 ? builds : [...builds].reverse()) {
        const run = await runDrain(server, `qs_ab_${(n += 1)}`, {
          workload: 'b',
          label: `${count} queues`,
          system: 'txoutbox',
          rep,
          backlog: { ready: 20_000, queues: queueNames(count) },
          measured: 20_000,
          timeoutMs: 120_000,
          quietMs: 0,
          library,
          lease,
        });
        const key = `${name} ${count}`;
        results.set(key, [...(results.get(key) ?? []), run.claimUsPerMessage]);
        const total = run.claimUsPerMessage + run.claimPlanUsPerMessage + run.claimPreludeUsPerMessage;
        push(rates, key, run.msgsPerSec);
        push(totals, key, total);
        const costs = planning
          ? `, planning ${run.claimPlanUsPerMessage}, prelude ${run.claimPreludeUsPerMessage}, total ${total.toFixed(2)} µs/msg`
          : '';
        console.log(
          `rep ${rep} ${name.padEnd(6)} ${String(count).padStart(4)} queues: ${run.msgsPerSec} msgs/s, claim ${run.claimUsPerMessage} µs/msg${costs}, ${run.claimCalls} claims${run.note === undefined ? '' : ` (${run.note})`}`,
        );
      }
    }
  }
} finally {
  await server.stop();
}
console.log(`\nlease: ${lease}`);
console.log('\n| queues | before: claim µs/msg (median) | × 1 queue | after | × 1 queue |\n|--:|--:|--:|--:|--:|');
for (const count of counts) {
  const cells = builds.map(([name]) => {
    const m = median(results.get(`${name} ${count}`) ?? []);
    const base = median(results.get(`${name} ${counts[0]}`) ?? []);
    return `${m.toFixed(1)} | ${(m / base).toFixed(2)}×`;
  });
  console.log(`| ${count} | ${cells.join(' | ')} |`);
}
console.log(
  '\n| queues | msgs/s before (median) | after |' +
    (planning ? ' claim with planning and prelude µs/msg, before | × 1 queue | after | × 1 queue |' : ''),
);
console.log(`|--:|--:|--:|${planning ? '--:|--:|--:|--:|' : ''}`);
for (const count of counts) {
  const cells = builds.map(([name]) => median(rates.get(`${name} ${count}`) ?? []).toFixed(0));
  const costs = planning
    ? builds.map(([name]) => {
        const m = median(totals.get(`${name} ${count}`) ?? []);
        const base = median(totals.get(`${name} ${counts[0]}`) ?? []);
        return ` ${m.toFixed(1)} | ${(m / base).toFixed(2)}× |`;
      })
    : [];
  console.log(`| ${count} | ${cells.join(' | ')} |${costs.join('')}`);
}
