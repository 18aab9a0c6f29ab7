/**
 * Node CPU per drained message (issue 18: ≤ 12 µs), txoutbox against raw SQL's consumer, from the
 * same process and the same server. Each round drains a fresh 20,000-row backlog once per way
 * (txoutbox, txoutbox with lease: 'row-lock' and raw SQL at concurrency 1, 4 and 16, a no-op handler that reads the body), the ways
 * in a rotated order, and reads process.cpuUsage() around the drain: user and system µs per
 * message, msgs/s, and the bytes the process read and wrote per message (/proc/self/io: the
 * consumer's database traffic, both directions). Medians over the rounds. The compiled library (dist/) as in `npm run bench`.
 *
 *   npm run bench:drain-cpu -- [rounds] [rows]       (builds dist/ first; default 5 rounds of 20,000)
 *
 * On the embedded server it also reads PostgreSQL's CPU per message by process kind (backends,
 * autovacuum, WAL writer: server-cpu-split.ts), and takes that sampler's own CPU out of the
 * process's (DRAIN_CPU_SERVER=0: not sampled); DRAIN_CPU_STATEMENTS=1 prints each drain's statements by server time (pg_stat_statements).
 *
 * DRAIN_CPU_WAYS=<regex> runs only the matching ways; DRAIN_CPU_HANDLER=async makes txoutbox's no-op
 * handler an async function, whose run goes through its promise (raw SQL's loop is unchanged); DRAIN_CPU_PROFILE=<dir> writes a V8 CPU
 * profile of each drain; DRAIN_CPU_BASELINE=<dir> (a copy of an earlier dist/, inside the
 * repository so it resolves the same node_modules) adds its txoutbox and row-lock ways, labelled
 * `base …`, to the same rotation: a change's before and after interleaved in one run, with each
 * way's paired difference from its base (the median over rounds of this round's CPU minus the
 * base's). DRAIN_CPU_SEAMS=prometheus adds each txoutbox way again with the Prometheus seams of its
 * build (W5's Prometheus variant). process.cpuUsage() counts every thread of the process (V8's GC
 * helpers too); a profile shows the main thread only, where time blocked in a socket write is sampled
 * as `writev` although it is not CPU.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

import { profiled } from '../cpu-profile.js';
import { startServer } from '../server.js';
import { rawSystem } from '../systems/raw.js';
import type { PrometheusLibrary } from '../systems/seams.js';
import type { RunOptions, System } from '../systems/system.js';
import { txoutboxRowLockSystem, txoutboxSystem, txoutboxSystemFrom } from '../systems/txoutbox.js';
import { drainAll, preload } from './preloaded-drain.js';
import { type CpuSplit, startServerCpuSplit } from './server-cpu-split.js';

const ROUNDS = Number(process.argv[2] ?? 5);
const ROWS = Number(process.argv[3] ?? 20_000);
const CONCURRENCIES = [1, 4, 16];
let profiles = 0;

interface Way {
  readonly label: string;
  readonly system: System;
  readonly concurrency: number;
  /** What the instance runs with (DRAIN_CPU_SEAMS). */
  readonly options?: RunOptions;
}

interface Sample {
  readonly userUs: number;
  readonly systemUs: number;
  readonly rate: number;
  /** Bytes the process read and wrote through syscalls per message (Linux /proc/self/io; NaN elsewhere). */
  readonly bytes: number;
  /** PostgreSQL's CPU µs per message by process kind (embedded server on Linux only). */
  readonly server: ReadonlyMap<string, number> | undefined;
}

/**
 * rchar + wchar of /proc/self/io: every byte this process read or wrote through a syscall. In the
 * drain that is the consumer's database traffic (the server is another process), both directions.
 */
function ioBytes(): number {
  try {
    const io = readFileSync('/proc/self/io', 'utf8');
    const field = (name: string): number => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? NaN);
    return field('rchar') + field('wchar');
  } catch {
    return NaN;
  }
}

/** DRAIN_CPU_HANDLER=async: txoutbox's handler is an async function (its run goes through a promise). */
const asyncHandler = process.env.DRAIN_CPU_HANDLER === 'async';
// Said before the tables, whose way labels are the same either way (the base pairing reads them).
console.log(`txoutbox handler: ${asyncHandler ? 'async (DRAIN_CPU_HANDLER=async)' : 'plain'}`);
/** DRAIN_CPU_WAYS=<regex> keeps the matching ways (e.g. 'txoutbox c1$' for a profile of one). */
const only = new RegExp(process.env.DRAIN_CPU_WAYS ?? '.');
const baselineDir = process.env.DRAIN_CPU_BASELINE;
const fromBaseline = async <M>(path: string): Promise<M> =>
  (await import(pathToFileURL(resolve(baselineDir ?? '.', path)).href)) as M;
const baseline = baselineDir === undefined ? undefined : await fromBaseline<Parameters<typeof txoutboxSystemFrom>[0]>('index.js');
/**
 * DRAIN_CPU_SEAMS=prometheus: every txoutbox way (the baseline's too, with its own build's seams)
 * also runs with prometheusRecorder + prometheusMiddleware, labelled `+ prometheus`: W5's
 * Prometheus variant, as an A/B of two builds in one run.
 */
const seams = process.env.DRAIN_CPU_SEAMS === 'prometheus' ? ('prometheus' as const) : undefined;
const basePrometheus =
  baselineDir === undefined || seams === undefined ? undefined : await fromBaseline<PrometheusLibrary>('prometheus/index.js');
const withSeams = (way: Way): Way[] =>
  seams === undefined || way.system.id.startsWith('raw')
    ? [way]
    : [way, { ...way, label: `${way.label} + prometheus`, options: { seams } }];
const ways: Way[] = CONCURRENCIES.flatMap((concurrency) =>
  [
    { label: `txoutbox c${concurrency}`, system: txoutboxSystem, concurrency },
    { label: `txoutbox row-lock c${concurrency}`, system: txoutboxRowLockSystem, concurrency },
    ...(baseline === undefined
      ? []
      : [
          {
            label: `base txoutbox c${concurrency}`,
            system: txoutboxSystemFrom(baseline, 'base', false, basePrometheus),
            concurrency,
          },
          {
            label: `base row-lock c${concurrency}`,
            system: txoutboxSystemFrom(baseline, 'base row-lock', true, basePrometheus),
            concurrency,
          },
        ]),
    { label: `raw SQL c${concurrency}`, system: rawSystem(false), concurrency },
  ].flatMap(withSeams),
).filter((way) => only.test(way.label));

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? NaN) : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
};

/** DRAIN_CPU_STATEMENTS=1: each drain's statements by server time (pg_stat_statements), µs per message. */
const showStatements = process.env.DRAIN_CPU_STATEMENTS === '1';

async function printStatements(server: Awaited<ReturnType<typeof startServer>>, label: string): Promise<void> {
  if (!server.statStatements) return;
  const { rows } = await server.admin.query<{ query: string; calls: string; exec: number; plan: number }>(
    `SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS query, calls, total_exec_time AS exec, total_plan_time AS plan
       FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'drain_cpu')
       ORDER BY total_exec_time + total_plan_time DESC LIMIT 8`,
  );
  for (const row of rows)
    process.stderr.write(
      `  ${label}: ${((row.exec * 1000) / ROWS).toFixed(2)} µs exec + ${((row.plan * 1000) / ROWS).toFixed(2)} µs plan /msg, ${row.calls} calls: ${row.query}\n`,
    );
}

/** µs per message by process kind, plus `all`. */
function perMessage(split: CpuSplit): Map<string, number> {
  const us = new Map<string, number>([['all', split.totalNs / 1000 / ROWS]]);
  for (const [kind, ns] of split.byKind) us.set(kind, ns / 1000 / ROWS);
  return us;
}

async function drainOnce(server: Awaited<ReturnType<typeof startServer>>, way: Way): Promise<Sample> {
  const url = await server.createDatabase('drain_cpu');
  const instance = way.system.create(url, { ...way.options, asyncHandler });
  try {
    await instance.setup();
    await preload(url, instance, ROWS);
    // DRAIN_CPU_PROFILE=<dir>: a V8 CPU profile of each drain (the drain only, not the preload).
    const { seconds, used, bytes, consumer, serverCpu } = await profiled(
      process.env.DRAIN_CPU_PROFILE,
      `${way.label.replace(/\W+/g, '-')}-${++profiles}`,
      async () => {
        if (showStatements) await server.admin.query('SELECT pg_stat_statements_reset()');
        const split =
          server.embedded && process.env.DRAIN_CPU_SERVER !== '0' ? await startServerCpuSplit(server.admin) : undefined;
        const cpu = process.cpuUsage();
        const io = ioBytes();
        const started = performance.now();
        const running = await drainAll(instance, way.concurrency, ROWS);
        return {
          seconds: (performance.now() - started) / 1000,
          used: process.cpuUsage(cpu),
          bytes: ioBytes() - io,
          consumer: running,
          serverCpu: split?.stop(),
        };
      },
    );
    await consumer.stop();
    if (showStatements) await printStatements(server, way.label);
    // The server sampler's own reads of /proc ran in this process: not the drain's CPU. Taken out
    // of user and system time in proportion (process.cpuUsage cannot tell them apart for it).
    const sampler = serverCpu?.samplerUs ?? 0;
    const share = used.user + used.system > 0 ? Math.max(0, 1 - sampler / (used.user + used.system)) : 1;
    return {
      userUs: (used.user * share) / ROWS,
      systemUs: (used.system * share) / ROWS,
      rate: ROWS / seconds,
      bytes: bytes / ROWS,
      server: serverCpu === undefined ? undefined : perMessage(serverCpu),
    };
  } finally {
    await instance.close();
    await server.dropDatabase('drain_cpu');
  }
}

const serverText = (us: ReadonlyMap<string, number> | undefined): string =>
  us === undefined
    ? ''
    : `; server ${[...us]
        .filter(([, value]) => value >= 0.05)
        .map(([kind, value]) => `${kind} ${value.toFixed(1)}`)
        .join(', ')} µs/msg`;

const server = await startServer(process.env.DATABASE_URL);
const samples = new Map<string, Sample[]>(ways.map((way) => [way.label, []]));
try {
  for (let round = 0; round < ROUNDS; round += 1) {
    const order = ways.map((_, i) => ways[(i + round) % ways.length] as Way);
    for (const way of order) {
      const sample = await drainOnce(server, way);
      samples.get(way.label)?.push(sample);
      process.stderr.write(
        `round ${round + 1} ${way.label}: user ${sample.userUs.toFixed(1)} µs, sys ${sample.systemUs.toFixed(1)} µs, ${Math.round(sample.rate)} msgs/s, ${Math.round(sample.bytes)} B/msg${serverText(sample.server)}\n`,
      );
    }
  }
} finally {
  await server.stop();
}
console.log(
  `| way | Node user µs/msg | Node sys µs/msg | total | msgs/s | bytes/msg | server µs/msg: all · backends · autovacuum · WAL writer |`,
);
console.log(`| --- | ---: | ---: | ---: | ---: | ---: | ---: |`);
const serverMedian = (list: readonly Sample[], kind: string): string =>
  median(list.map((s) => s.server?.get(kind) ?? (s.server === undefined ? NaN : 0))).toFixed(1);
for (const way of ways) {
  const list = samples.get(way.label) ?? [];
  const user = median(list.map((s) => s.userUs));
  const system = median(list.map((s) => s.systemUs));
  const total = median(list.map((s) => s.userUs + s.systemUs));
  console.log(
    `| ${way.label} | ${user.toFixed(1)} | ${system.toFixed(1)} | ${total.toFixed(1)} | ${Math.round(median(list.map((s) => s.rate)))} | ${Math.round(median(list.map((s) => s.bytes)))} | ${['all', 'backend', 'autovacuum worker', 'walwriter'].map((kind) => serverMedian(list, kind)).join(' · ')} |`,
  );
}

/**
 * A way's base, when the baseline runs: `base txoutbox c4` for `txoutbox c4`, `base row-lock c4
 * + prometheus` for `txoutbox row-lock c4 + prometheus`.
 */
const baseOf = (label: string): string => `base ${label.replace(/^txoutbox row-lock/, 'row-lock')}`;
const paired = ways.filter((way) => samples.has(baseOf(way.label)));
if (paired.length > 0) {
  console.log('\n| way − its base, paired by round | Node CPU µs/msg | rounds lower | msgs/s vs base |');
  console.log('| --- | ---: | ---: | ---: |');
  for (const way of paired) {
    const mine = samples.get(way.label) ?? [];
    const base = samples.get(baseOf(way.label)) ?? [];
    const cpu = mine.map((s, i) => s.userUs + s.systemUs - ((base[i]?.userUs ?? NaN) + (base[i]?.systemUs ?? NaN)));
    const rate = mine.map((s, i) => s.rate / (base[i]?.rate ?? NaN) - 1);
    console.log(
      `| ${way.label} | ${median(cpu) >= 0 ? '+' : ''}${median(cpu).toFixed(2)} | ${cpu.filter((d) => d < 0).length}/${cpu.length} | ${(median(rate) * 100).toFixed(1)} % |`,
    );
  }
}
