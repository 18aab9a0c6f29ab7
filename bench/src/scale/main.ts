/**
 * `npm run bench:scale`: what txoutbox costs as the work grows (issue 18; BENCHMARKS.md, "Issue 18:
 * cost as the work grows"). Four workloads, each run in a fresh database of one embedded
 * PostgreSQL (or DATABASE_URL's server), against the compiled library:
 *   a  drain rate from a reference backlog, a million-row one, and one with scheduled and DLQ rows
 *   b  one subscription over 1 … 1,000 queues: claim cost per message
 *   c  W1 (one message per transaction) with 1, 8 and 64 producers, raw SQL alongside
 *   d  soak: publish and drain together at 80 % of the calibrated maximum, sampled; then with
 *      autovacuum off on the table
 * Writes bench/results/scale-<mode>-<time>.{json,md} and one SVG per curve; `--charts <dir>` also
 * writes the SVGs there (the committed bench/charts/).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import type { DrainSpec } from './drain.js';
import type { ScaleResults } from './results.js';
import { FULL_SCALE, QUICK_SCALE, SOAK_LOAD } from './sizes.js';

const WORKLOADS = ['a', 'b', 'c', 'd'] as const;

const USAGE = `npm run bench:scale -- [options]
  --quick              every workload at tiny sizes, a 20-second soak (about a minute; run by npm test)
  --only a,b,c,d       workloads to run (default: all): a backlog drain, b queues per subscription,
                       c W1 by producers, d soak
  --reps N             repetitions of a, b and c (default: ${FULL_SCALE.reps} full, ${QUICK_SCALE.reps} quick)
  --soak-minutes M     length of the soak (default: ${FULL_SCALE.soakSeconds / 60}; quick: ${QUICK_SCALE.soakSeconds} s)
  --out <dir>          where the results go (default: bench/results)
  --charts <dir>       also write the SVG charts there (BENCHMARKS.md links bench/charts/)
  --help               this text
Environment: DATABASE_URL runs against that server instead of an embedded one (needs CREATE DATABASE).`;

function parseOptions() {
  return parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      reps: { type: 'string' },
      'soak-minutes': { type: 'string' },
      out: { type: 'string' },
      charts: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  }).values;
}

function fail(message: string): never {
  console.error(`${message}\n\n${USAGE}`);
  process.exit(2);
}

let args: ReturnType<typeof parseOptions>;
try {
  args = parseOptions();
} catch (error) {
  fail(error instanceof Error ? error.message : String(error));
}
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}
const base = args.quick ? QUICK_SCALE : FULL_SCALE;
const reps = args.reps === undefined ? base.reps : Number(args.reps);
if (!Number.isInteger(reps) || reps < 1) fail(`--reps: expected a positive integer, got ${args.reps}`);
const soakMinutes = args['soak-minutes'] === undefined ? base.soakSeconds / 60 : Number(args['soak-minutes']);
if (!(Number.isFinite(soakMinutes) && soakMinutes > 0 && soakMinutes <= 24 * 60)) {
  fail(`--soak-minutes: expected a number of minutes above 0 (up to 1440), got ${args['soak-minutes']}`);
}
const only = args.only?.split(',') ?? [...WORKLOADS];
const unknown = only.filter((w) => !(WORKLOADS as readonly string[]).includes(w));
if (unknown.length > 0) fail(`--only: unknown workload ${unknown.join(', ')} (expected a, b, c or d)`);
const sizes = { ...base, reps, soakSeconds: Math.round(soakMinutes * 60) };
const mode = args.quick ? 'quick' : 'full';
// npm runs scripts in the package root; relative paths mean the directory the command was typed in.
const userPath = (path: string): string => resolve(process.env.INIT_CWD ?? process.cwd(), path);
const outDir = args.out === undefined ? join(import.meta.dirname, '..', '..', 'results') : userPath(args.out);
const chartsDir = args.charts === undefined ? undefined : userPath(args.charts);
// Waits (up to) this long for a quiet machine before each measured run; --quick measures nothing it reports.
const quietMs = args.quick ? 0 : 10_000;

function gitCommit(): string {
  try {
    const cwd = join(import.meta.dirname, '..', '..', '..');
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd, encoding: 'utf8' }).trim();
    const dirty =
      execFileSync('git', ['status', '--porcelain', '--', 'src', 'bench/src'], { cwd, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${commit} + uncommitted src/ or bench/src/ changes` : commit;
  } catch {
    return 'unknown';
  }
}

interface Step {
  readonly workload: string;
  readonly label: string;
  readonly run: (database: string) => Promise<string>;
}

// Loaded once the options are valid: they load the compiled library (dist/), which a bad option
// must not need.
const { startServer } = await import('../server.js');
const { writeCharts } = await import('./charts.js');
const { queueNames, runDrain } = await import('./drain.js');
const { PUBLISH_SYSTEMS, runPublish } = await import('./publish.js');
const { renderScaleReport } = await import('./report.js');
const { runSoak } = await import('./soak.js');

const started = new Date();
const server = await startServer(process.env.DATABASE_URL);
const results: ScaleResults = {
  mode,
  startedAt: started.toISOString(),
  finishedAt: '',
  commit: gitCommit(),
  command: `npm run bench:scale -- ${process.argv.slice(2).join(' ')}`.trim(),
  machine: {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? '?',
    memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
    kernel: release(),
    node: process.version,
  },
  postgres: { version: server.version, statStatements: server.statStatements, settings: server.settings },
  sizes,
  drains: [],
  publishes: [],
  soaks: [],
  failures: [],
};
console.log(
  `txoutbox scale bench (${mode}): workloads ${only.join(',')}, ${reps} repetition(s); PostgreSQL ${server.version} ` +
    `(${server.embedded ? 'embedded' : 'DATABASE_URL'}), pg_stat_statements ${server.statStatements ? 'on' : 'unavailable'}`,
);

const steps: Step[] = [];
const fmt = (v: number): string => (v >= 10_000 ? `${(v / 1000).toFixed(1)}k` : v.toFixed(0));
const drainStep = (spec: DrainSpec): Step => ({
  workload: spec.workload,
  label: `${spec.label} · ${spec.system} · rep ${spec.rep}`,
  run: async (database) => {
    const run = await runDrain(server, database, spec);
    results.drains.push(run);
    return (
      `${fmt(run.msgsPerSec)} msgs/s, claim ${run.claimMeanMs} ms mean (${run.claimUsPerMessage} µs/msg), ` +
      `${run.statementsPerMsg ?? '?'} stmts/msg, ${run.autovacuums} autovacuum(s), loaded in ${run.loadSeconds} s` +
      `${(run.otherCpu ?? 0) > 0.3 ? ` [unattributed CPU: ${run.otherCpu} cores]` : ''}${run.duplicates > 0 ? `, ${run.duplicates} DUPLICATES` : ''}` +
      (run.note === undefined ? '' : ` (${run.note})`)
    );
  },
});
const common = { rep: 0, measured: sizes.drainMeasured, timeoutMs: sizes.timeoutMs, quietMs };
for (let rep = 1; rep <= reps; rep += 1) {
  if (only.includes('a')) {
    const backlogs = [
      {
        label: `reference: ${fmt(sizes.drainMeasured)} ready`,
        backlog: { ready: sizes.drainMeasured, queues: ['bench'] },
        raw: true,
      },
      { label: `${fmt(sizes.bigBacklog)} ready`, backlog: { ready: sizes.bigBacklog, queues: ['bench'] }, raw: true },
      {
        label: `${fmt(sizes.drainMeasured)} ready + ${fmt(sizes.scheduledRows)} scheduled + ${fmt(sizes.dlqRows)} in the DLQ`,
        backlog: { ready: sizes.drainMeasured, queues: ['bench'], scheduled: sizes.scheduledRows, dlq: sizes.dlqRows },
        raw: false,
      },
    ];
    for (const b of backlogs) {
      for (const system of b.raw ? (['txoutbox', 'raw'] as const) : (['txoutbox'] as const)) {
        steps.push(drainStep({ ...common, workload: 'a', label: b.label, system, rep, backlog: b.backlog }));
      }
    }
  }
  if (only.includes('b')) {
    for (const count of sizes.queueCounts) {
      steps.push(
        drainStep({
          ...common,
          workload: 'b',
          label: `${count} queue${count === 1 ? '' : 's'}`,
          system: 'txoutbox',
          rep,
          backlog: { ready: sizes.drainMeasured, queues: queueNames(count) },
        }),
      );
    }
  }
  if (only.includes('c')) {
    for (const producers of sizes.producerCounts) {
      for (const system of PUBLISH_SYSTEMS) {
        steps.push({
          workload: 'c',
          label: `W1 ${producers} producer${producers === 1 ? '' : 's'} · ${system.id} · rep ${rep}`,
          run: async (database) => {
            const run = await runPublish(server, database, system, producers, rep, sizes.publishMessages, quietMs);
            results.publishes.push(run);
            const check = run.losses + run.duplicates > 0 ? ` LOSSES ${run.losses} DUPLICATES ${run.duplicates}` : '';
            return `${fmt(run.msgsPerSec)} msgs/s, ${run.statementsPerMsg ?? '?'} stmts/msg${check}`;
          },
        });
      }
    }
  }
}
if (only.includes('d')) {
  let maxRate = Number.NaN;
  const soakStep = (variant: 'calibrate' | 'soak' | 'autovacuum off', seconds: number): Step => ({
    workload: 'd',
    label: `soak ${variant} (${seconds} s)`,
    run: async (database) => {
      const rate = variant === 'calibrate' ? 'max' : SOAK_LOAD * maxRate;
      if (rate !== 'max' && !Number.isFinite(rate)) throw new Error('the calibration run did not measure a rate');
      const result = await runSoak(server, database, {
        variant,
        rate,
        seconds,
        sampleSeconds: sizes.sampleSeconds,
        timeoutMs: sizes.timeoutMs,
      });
      results.soaks.push(result);
      if (variant === 'calibrate') maxRate = Math.min(result.publishedPerSec, result.drainedPerSec);
      return (
        `published ${fmt(result.publishedPerSec)}/s, drained ${fmt(result.drainedPerSec)}/s, p99 ${result.p99Ms} ms` +
        `${variant === 'calibrate' ? `; soak rate ${fmt(SOAK_LOAD * maxRate)}/s` : ''}${result.note === undefined ? '' : ` (${result.note})`}`
      );
    },
  });
  steps.push(
    soakStep('calibrate', sizes.calibrateSeconds),
    soakStep('soak', sizes.soakSeconds),
    soakStep('autovacuum off', sizes.noVacuumSeconds),
  );
}

const clock = performance.now();
let index = 0;
for (const step of steps) {
  index += 1;
  const prefix = `[${index}/${steps.length}] ${Math.round((performance.now() - clock) / 1000)}s ${step.workload} ${step.label}`;
  try {
    console.log(`${prefix}: ${await step.run(`scale_${index}`)}`);
  } catch (error) {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    results.failures.push({ workload: step.workload, label: step.label, error: message.split('\n').slice(0, 3).join(' | ') });
    console.log(`${prefix}: FAILED ${message.split('\n')[0] ?? ''}`);
  }
}
await server.stop();
results.finishedAt = new Date().toISOString();

mkdirSync(outDir, { recursive: true });
const stamp = `scale-${mode}-${started.toISOString().replace(/[:.]/g, '-').slice(0, 19)}`;
const svgDir = join(outDir, stamp);
const written = writeCharts(results, [svgDir, ...(chartsDir === undefined ? [] : [chartsDir])]);
writeFileSync(join(outDir, `${stamp}.json`), `${JSON.stringify(results, null, 2)}\n`);
const report = renderScaleReport(results, (file) => `${stamp}/${file}`);
writeFileSync(join(outDir, `${stamp}.md`), report);
console.log(`\n${report}`);
console.log(
  `results: ${join(outDir, `${stamp}.json`)}; ${written} charts in ${relative(process.cwd(), svgDir) || svgDir}${chartsDir === undefined ? '' : ` and ${chartsDir}`}`,
);
const bad =
  results.failures.length > 0 ||
  results.drains.some((r) => r.duplicates > 0 || r.note !== undefined) ||
  results.publishes.some((r) => r.losses + r.duplicates > 0) ||
  results.soaks.some((s) => s.note !== undefined);
if (bad) process.exitCode = 1;
