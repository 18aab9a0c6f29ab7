/**
 * `npm run bench` (full: 3 repetitions) or `npm run bench -- --quick` (smoke run, under a minute).
 * Options: see USAGE (`npm run bench -- --help`).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import pg from 'pg';

import { profiled } from './cpu-profile.js';
import { PhaseMeter, waitForQuiet } from './measure.js';
import { Progress } from './progress.js';
import { type BenchResults, renderReport, type RunRecord } from './report.js';
import { runnerUnavailable, runnerWorkload, W6_CONCURRENCY, W6_PROCESSES } from './runner-workload.js';
import { startServer } from './server.js';
import { graphileSystem } from './systems/graphile.js';
import { pgBossSystem } from './systems/pgboss.js';
import { rawSystem } from './systems/raw.js';
import { roundOrder, W5_ORDER, W5_VARIANTS } from './systems/seam-variants.js';
import { openTelemetryStatus } from './systems/seams.js';
import type { RunOptions, System, WorkloadId } from './systems/system.js';
import {
  txoutboxAsyncHandlerSystem,
  txoutboxInTransactionSystem,
  txoutboxRowLockSystem,
  txoutboxSystem,
  txoutboxTransactionalAsyncCommitSystem,
  txoutboxTransactionalSystem,
} from './systems/txoutbox.js';
import {
  drainWorkload,
  FULL,
  type Measured,
  preload,
  publishWorkload,
  QUICK,
  type Sizes,
  wakeWorkload,
  type WorkloadContext,
} from './workloads.js';

const allSystems: System[] = [
  txoutboxSystem,
  txoutboxInTransactionSystem,
  txoutboxTransactionalSystem,
  txoutboxTransactionalAsyncCommitSystem,
  txoutboxRowLockSystem,
  txoutboxAsyncHandlerSystem,
  rawSystem(false),
  rawSystem(true),
  pgBossSystem,
  graphileSystem,
];

const USAGE = `npm run bench -- [options]
  --quick              smoke run: every workload and system once, small sizes (~45 s)
  --only W1,W3         workloads to run (default: W1,W2,W3,W4,W5,W6)
  --systems a,b        systems to run, by id: ${allSystems.map((s) => s.id).join(', ')} (default: all)
  --reps N             repetitions (default: 3 full, 1 quick)
  --out <dir>          where the results go (default: bench/results)
  --cpu-profile <dir>  a V8 CPU profile of every measured txoutbox phase
  --commit-delay <us>  embedded server only: every commit waits <us> microseconds before its
                       WAL flush (commit_delay, commit_siblings 0), as on slower storage
  --help               this text
Environment: DATABASE_URL runs against that server instead of an embedded one (needs CREATE DATABASE).`;

function parseOptions() {
  return parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      only: { type: 'string' },
      systems: { type: 'string' },
      'cpu-profile': { type: 'string' },
      reps: { type: 'string' },
      'commit-delay': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  }).values;
}

let args: ReturnType<typeof parseOptions>;
try {
  args = parseOptions();
} catch (error) {
  // An unknown option, a missing value, a value that starts with a dash (`--commit-delay=-5`).
  console.error(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
  process.exit(2);
}

if (args.help) {
  console.log(USAGE);
  process.exit(0);
}

const baseSizes: Sizes = args.quick ? QUICK : FULL;
const reps = args.reps === undefined ? baseSizes.reps : Number(args.reps);
if (!Number.isInteger(reps) || reps < 1) {
  console.error(`--reps: expected a positive integer, got ${args.reps}\n\n${USAGE}`);
  process.exit(2);
}
const sizes: Sizes = { ...baseSizes, reps };
const commitDelay = args['commit-delay'] === undefined ? undefined : Number(args['commit-delay']);
if (commitDelay !== undefined && !(Number.isInteger(commitDelay) && commitDelay >= 0 && commitDelay <= 100_000)) {
  console.error(`--commit-delay: expected microseconds, an integer from 0 to 100000, got ${args['commit-delay']}\n\n${USAGE}`);
  process.exit(2);
}
if (commitDelay !== undefined && process.env.DATABASE_URL) {
  console.error(
    `--commit-delay applies to the embedded server only; set commit_delay on the DATABASE_URL server instead\n\n${USAGE}`,
  );
  process.exit(2);
}
const mode = args.quick ? 'quick' : 'full';
// `npm run bench` runs in bench/ (npm --prefix); relative paths mean the directory the user typed
// the command in, which npm passes as INIT_CWD.
const userPath = (path: string): string => resolve(process.env.INIT_CWD ?? process.cwd(), path);
const outDir = args.out === undefined ? join(import.meta.dirname, '..', 'results') : userPath(args.out);
const cpuProfileDir = args['cpu-profile'] === undefined ? undefined : userPath(args['cpu-profile']);
const onlyWorkloads = args.only?.split(',') ?? ['W1', 'W2', 'W3', 'W4', 'W5', 'W6'];
const unknownSystems = args.systems?.split(',').filter((id) => !allSystems.some((s) => s.id === id)) ?? [];
if (unknownSystems.length > 0) {
  console.error(`--systems: unknown ${unknownSystems.join(', ')}\n\n${USAGE}`);
  process.exit(2);
}
const systems = args.systems === undefined ? allSystems : allSystems.filter((s) => args.systems?.split(',').includes(s.id));

interface PlannedRun {
  readonly workload: WorkloadId;
  readonly variant: string;
  readonly system: System;
  readonly rep: number;
  readonly options: RunOptions;
  readonly preload: number;
  readonly run: (ctx: WorkloadContext) => Promise<Measured>;
  /** Run, but left out of the results: it only warms the process up for the runs after it. */
  readonly warmUp?: boolean;
}

const plan: PlannedRun[] = [];
const skipped: { workload: WorkloadId; system: string; reason: string }[] = [];

function add(
  workload: WorkloadId,
  variant: string,
  make: (system: System, rep: number) => Omit<PlannedRun, 'workload' | 'variant' | 'system' | 'rep'>,
): void {
  if (!onlyWorkloads.includes(workload)) return;
  for (const system of systems) {
    const reason = system.skips[workload];
    if (reason !== undefined && !skipped.some((s) => s.workload === workload && s.system === system.id)) {
      skipped.push({ workload, system: system.id, reason });
    }
  }
  for (let rep = 1; rep <= sizes.reps; rep += 1) {
    for (const system of systems) {
      if (system.skips[workload] !== undefined) continue;
      plan.push({ workload, variant, system, rep, ...make(system, rep) });
    }
  }
}

add('W1', 'publish-single', () => ({
  options: {},
  preload: 0,
  run: (ctx) => publishWorkload(ctx, sizes.publishSingle, 1),
}));
add('W2', 'publish-batch', () => ({
  options: {},
  preload: 0,
  run: (ctx) => publishWorkload(ctx, sizes.publishBatch, sizes.batchSize),
}));
for (const concurrency of sizes.drainConcurrency) {
  add('W3', `drain c${concurrency}`, () => ({
    options: {},
    preload: sizes.drain,
    run: (ctx) => drainWorkload(ctx, concurrency, sizes.drain),
  }));
}
add('W4', 'wake latency', () => ({ options: {}, preload: 0, run: (ctx) => wakeWorkload(ctx) }));
if (onlyWorkloads.includes('W5') && systems.includes(txoutboxSystem)) {
  // An overhead of a few percent needs more pairs than a throughput ratio: 5 interleaved rounds of
  // every variant (the overall target is off vs on; the others split it: Prometheus alone, tracing
  // alone, the bare SDK floor tracing is judged against, and tracing whose sampler drops the span).
  // Each round runs them in another order (roundOrder): in one order each variant inherited the
  // garbage and JIT state of the same predecessor (the dropping sampler always followed tracing).
  // One untimed drain with every seam first: the first run of a process compiled the delivery path
  // and the seams' code, and paid ~5–10 µs per message more than the same variant later on, which
  // skewed round 1's pairs (BENCHMARKS.md, issue 18 round nine).
  const rounds = args.quick ? sizes.reps : Math.max(sizes.reps, 5);
  if (!args.quick)
    plan.push({
      workload: 'W5',
      variant: 'warm-up',
      system: txoutboxSystem,
      rep: 0,
      options: { seams: 'on' },
      preload: sizes.seamDrain,
      run: (ctx) => drainWorkload(ctx, 16, sizes.seamDrain),
      warmUp: true,
    });
  for (let rep = 1; rep <= rounds; rep += 1) {
    for (const seams of roundOrder(W5_ORDER, rep - 1)) {
      plan.push({
        workload: 'W5',
        variant: W5_VARIANTS[seams],
        system: txoutboxSystem,
        rep,
        options: { seams },
        preload: sizes.seamDrain,
        run: (ctx) => drainWorkload(ctx, 16, sizes.seamDrain),
      });
    }
  }
}
const w6Status = runnerUnavailable();
if (onlyWorkloads.includes('W6') && w6Status !== undefined)
  skipped.push({ workload: 'W6', system: 'txoutbox', reason: w6Status });
if (onlyWorkloads.includes('W6') && w6Status === undefined && systems.includes(txoutboxSystem)) {
  for (let rep = 1; rep <= sizes.reps; rep += 1) {
    plan.push({
      workload: 'W6',
      variant: `runner ${W6_PROCESSES}×c${W6_CONCURRENCY}`,
      system: txoutboxSystem,
      rep,
      options: {},
      preload: 0,
      run: (ctx) => runnerWorkload(ctx, ctx.databaseUrl, ctx.database),
    });
  }
}

function gitCommit(): string {
  try {
    const cwd = join(import.meta.dirname, '..', '..');
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd, encoding: 'utf8' }).trim();
    // The harness is part of what a result says: a run with an edited bench/ is not the commit's.
    const dirty =
      execFileSync('git', ['status', '--porcelain', '--', 'src', 'bench/src'], { cwd, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${commit} + uncommitted src/ or bench/src/ changes` : commit;
  } catch {
    return 'unknown';
  }
}

const format = (value: number): string => (value >= 10_000 ? `${(value / 1000).toFixed(1)}k` : value.toFixed(0));

const started = new Date();
console.log(
  `txoutbox bench (${mode}): ${plan.length} runs, ${sizes.reps} repetition(s), systems ${systems.map((s) => s.id).join(', ')}`,
);
const server = await startServer(process.env.DATABASE_URL, commitDelay);
console.log(
  `PostgreSQL ${server.version} (${server.embedded ? 'embedded' : 'DATABASE_URL'}), fsync=${server.settings.fsync ?? '?'}, ` +
    `synchronous_commit=${server.settings.synchronous_commit ?? '?'}, commit_delay=${server.settings.commit_delay ?? '?'}µs, pg_stat_statements ${server.statStatements ? 'on' : 'unavailable'}`,
);
for (const skip of skipped) console.log(`skip ${skip.workload} ${skip.system}: ${skip.reason}`);

const progress = new Progress(plan.length);
const runs: RunRecord[] = [];
let otelStatus = 'not run';
let index = 0;
for (const entry of plan) {
  index += 1;
  const label = `${entry.workload} ${entry.variant} · ${entry.system.label} · rep ${entry.rep}`;
  progress.begin(label);
  const database = `bench_${index}`;
  const base = { workload: entry.workload, variant: entry.variant, system: entry.system.id, rep: entry.rep };
  let producers: pg.Pool | undefined;
  const url = await server.createDatabase(database);
  const instance = entry.system.create(url, entry.options);
  try {
    producers = new pg.Pool({ connectionString: url, max: sizes.producers });
    producers.on('error', () => undefined);
    const meter = new PhaseMeter(server.admin, database, server.statStatements);
    const ctx: WorkloadContext = { instance, producers, sizes, meter, databaseUrl: url, database };
    await instance.setup();
    await server.admin.query('CHECKPOINT');
    if (entry.preload > 0) await preload(ctx, entry.preload);
    const busyBefore = await waitForQuiet(args.quick ? 2_000 : 20_000);
    const profileName = `${entry.workload}-${entry.variant.replace(/\W+/g, '-')}-${entry.system.id}-${entry.rep}`;
    const profileDir = entry.system.id.startsWith('txoutbox') ? cpuProfileDir : undefined;
    const measured = await profiled(profileDir, profileName, () => entry.run(ctx));
    const cost = await meter.stop();
    if (entry.options.seams !== undefined && entry.options.seams !== 'off' && entry.options.seams !== 'prometheus')
      otelStatus = await openTelemetryStatus();
    const msgsPerSec = measured.messages / measured.seconds;
    const statementsPerMsg = cost.statements === null ? null : cost.statements / measured.messages;
    const walBytesPerMsg = cost.walBytes / measured.messages;
    const record: RunRecord = { ...base, ...measured, msgsPerSec, statementsPerMsg, walBytesPerMsg, busyBefore, cost };
    if (entry.warmUp !== true) runs.push(record);
    const shared = (cost.otherCpu ?? 0) > 0.5 ? ` [unattributed CPU: ${(cost.otherCpu ?? 0).toFixed(2)} cores]` : '';
    const check =
      (record.duplicates ?? 0) + (record.losses ?? 0) > 0
        ? ` DUPLICATES ${record.duplicates ?? 0} LOSSES ${record.losses ?? 0}`
        : '';
    const latency = record.latencyMs === undefined ? '' : `, p99 ${record.latencyMs.p99} ms`;
    progress.end(
      label,
      `${format(msgsPerSec)} msgs/s${latency}, ${statementsPerMsg?.toFixed(3) ?? '?'} stmts/msg, ` +
        `${walBytesPerMsg.toFixed(0)} WAL B/msg, ${cost.heapAllocatedBytes === null ? '?' : (cost.heapAllocatedBytes / measured.messages).toFixed(0)} heap B/msg${check}${record.note === undefined ? '' : ` (${record.note})`}${shared}`,
    );
  } catch (error) {
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    if (entry.warmUp !== true) runs.push({ ...base, error: message.split('\n').slice(0, 3).join(' | ') });
    progress.end(label, `FAILED: ${message.split('\n')[0] ?? ''}`);
  } finally {
    await instance.close().catch(() => undefined);
    await producers?.end().catch(() => undefined);
    await server.dropDatabase(database).catch(() => undefined);
  }
}
progress.finish();
await server.stop();

const results: BenchResults = {
  mode,
  startedAt: started.toISOString(),
  finishedAt: new Date().toISOString(),
  machine: {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? '?',
    memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
    kernel: release(),
    node: process.version,
  },
  postgres: {
    version: server.version,
    embedded: server.embedded,
    statStatements: server.statStatements,
    settings: server.settings,
  },
  commit: gitCommit(),
  sizes,
  systems: systems.map((s) => ({ id: s.id, label: s.label, version: s.version, tuning: s.tuning, skips: s.skips })),
  skipped,
  openTelemetry: otelStatus,
  runner: w6Status ?? 'available',
  runs,
};
mkdirSync(outDir, { recursive: true });
const stamp = started.toISOString().replace(/[:.]/g, '-').slice(0, 19);
const jsonPath = join(outDir, `${mode}-${stamp}.json`);
const report = renderReport(results);
writeFileSync(jsonPath, `${JSON.stringify(results, null, 2)}\n`);
writeFileSync(jsonPath.replace(/\.json$/, '.md'), report);
console.log(`\n${report}`);
console.log(`results: ${jsonPath}`);
if (runs.some((r) => r.error !== undefined)) process.exitCode = 1;
