/**
 * W3 drain in `lease: 'row-lock'` mode, before and after a change, against raw SQL (issue 18:
 * ≥ 1.0× raw at concurrency 1, 4 and 16), interleaved in one process on one server: each round
 * drains a fresh backlog once per way — the baseline build's row-lock mode, this build's, raw SQL —
 * at each concurrency, in an order rotated per round. Reports msgs/s and Node CPU per message
 * (process.cpuUsage: every thread) as medians, and each build's ratio to raw SQL taken per round
 * (the raw drain of the same round and concurrency) before the median, so a slow spell of the
 * shared machine moves both sides of a ratio.
 *
 *   ROW_LOCK_AB_BASELINE=<copy of an earlier dist/, inside the repository> \
 *     node bench/ensure-build.mjs && node --import tsx bench/src/probes/row-lock-ab.ts [rounds] [rows]
 *
 * Without ROW_LOCK_AB_BASELINE only this build and raw SQL run. Defaults: 3 rounds of 20,000 rows.
 */
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

import { startServer } from '../server.js';
import { rawSystem } from '../systems/raw.js';
import type { System } from '../systems/system.js';
import { txoutboxRowLockSystem, txoutboxSystemFrom } from '../systems/txoutbox.js';
import { drainAll, preload } from './preloaded-drain.js';

const ROUNDS = Number(process.argv[2] ?? 3);
const ROWS = Number(process.argv[3] ?? 20_000);
const CONCURRENCIES = (process.env.ROW_LOCK_AB_C ?? '1,4,16').split(',').map(Number);

interface Way {
  readonly kind: 'base' | 'new' | 'raw';
  readonly system: System;
  readonly concurrency: number;
}

interface Sample {
  readonly cpuUs: number;
  readonly rate: number;
}

const baselineDir = process.env.ROW_LOCK_AB_BASELINE;
const baseline =
  baselineDir === undefined
    ? undefined
    : ((await import(pathToFileURL(resolve(baselineDir, 'index.js')).href)) as Parameters<typeof txoutboxSystemFrom>[0]);
const ways: Way[] = CONCURRENCIES.flatMap((concurrency) => [
  ...(baseline === undefined
    ? []
    : [{ kind: 'base' as const, system: txoutboxSystemFrom(baseline, 'base row-lock', true), concurrency }]),
  { kind: 'new' as const, system: txoutboxRowLockSystem, concurrency },
  { kind: 'raw' as const, system: rawSystem(false), concurrency },
]);
const label = (way: Way): string => `${way.kind} c${way.concurrency}`;

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? NaN) : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
};

async function drainOnce(server: Awaited<ReturnType<typeof startServer>>, way: Way): Promise<Sample> {
  const url = await server.createDatabase('row_lock_ab');
  const instance = way.system.create(url, {});
  try {
    await instance.setup();
    await preload(url, instance, ROWS);
    const cpu = process.cpuUsage();
    const started = performance.now();
    const consumer = await drainAll(instance, way.concurrency, ROWS);
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpu);
    await consumer.stop();
    return { cpuUs: (used.user + used.system) / ROWS, rate: ROWS / seconds };
  } finally {
    await instance.close();
    await server.dropDatabase('row_lock_ab');
  }
}

const server = await startServer(process.env.DATABASE_URL);
const samples = new Map<string, Sample[]>(ways.map((way) => [label(way), []]));
try {
  for (let round = 0; round < ROUNDS; round += 1) {
    const order = ways.map((_, i) => ways[(i + round) % ways.length] as Way);
    for (const way of order) {
      const sample = await drainOnce(server, way);
      samples.get(label(way))?.push(sample);
      process.stderr.write(
        `round ${round + 1} ${label(way)}: ${Math.round(sample.rate)} msgs/s, ${sample.cpuUs.toFixed(1)} µs CPU/msg\n`,
      );
    }
  }
} finally {
  await server.stop();
}
console.log('| concurrency | way | msgs/s (median, min–max) | Node CPU µs/msg | ÷ raw (median of per-round ratios) |');
console.log('| --- | --- | ---: | ---: | ---: |');
for (const way of ways) {
  const list = samples.get(label(way)) ?? [];
  const raw = samples.get(`raw c${way.concurrency}`) ?? [];
  const rates = list.map((s) => s.rate);
  const ratio = median(list.map((s, i) => s.rate / (raw[i]?.rate ?? NaN)));
  console.log(
    `| c${way.concurrency} | ${way.kind} | ${Math.round(median(rates))} (${Math.round(Math.min(...rates))}–${Math.round(Math.max(...rates))}) | ${median(list.map((s) => s.cpuUs)).toFixed(1)} | ${way.kind === 'raw' ? '' : `${ratio.toFixed(2)}×`} |`,
  );
}
