/**
 * W6: W3 (c16, fetchBatchSize 100) through `txoutbox run` with 2 processes. Both children start on
 * an empty table and wait idle (their LISTEN connections are up); the backlog then lands in one
 * committed transaction and the clock runs from that COMMIT until the table is empty (every row
 * acked). Children count what they handled (w6-handler.ts), so duplicates and losses are checked
 * across processes. Until `txoutbox run` exists this workload is skipped with a clear line.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import pg from 'pg';

import { CLI_MAIN_JS } from './library.js';
import { FETCH_BATCH_SIZE } from './systems/txoutbox.js';
import { type Measured, withTimeout, type WorkloadContext } from './workloads.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The compiled bin, as users run it (see library.ts); tsx stays loaded for the handler module (w6-handler.ts). */
const CLI_MAIN = fileURLToPath(CLI_MAIN_JS);
const HANDLER = fileURLToPath(new URL('./w6-handler.ts', import.meta.url));
/** How long `txoutbox run` may take to drain and exit after SIGTERM before it is killed. */
const STOP_TIMEOUT_MS = 20_000;
export const W6_PROCESSES = 2;
export const W6_CONCURRENCY = 16;

/** undefined when `txoutbox run` exists, else why W6 cannot run. */
export function runnerUnavailable(): string | undefined {
  return existsSync(CLI_MAIN) ? undefined : 'runner not available: dist/cli/main.js is missing (npm run build)';
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(
  what: string,
  timeoutMs: number,
  check: () => Promise<boolean>,
  child: ChildProcess,
  log: () => string,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (child.exitCode !== null) throw new Error(`txoutbox run exited (${child.exitCode}) before ${what}: ${log()}`);
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}: ${log()}`);
    await sleep(20);
  }
}

export async function runnerWorkload(ctx: WorkloadContext, databaseUrl: string, database: string): Promise<Measured> {
  const total = ctx.sizes.drain;
  const dir = mkdtempSync(join(tmpdir(), 'txoutbox-bench-w6-'));
  const config = join(dir, 'txoutbox.yaml');
  writeFileSync(
    config,
    [
      'database:',
      `  url: "${databaseUrl}"`,
      'table: txoutbox.outbox',
      'metrics:',
      '  prometheus:',
      '    port: 0',
      'consumers:',
      '  bench:',
      `    handler: ${HANDLER}`,
      '    export: handle',
      '    queues: [bench]',
      `    processes: ${W6_PROCESSES}`,
      `    concurrency: ${W6_CONCURRENCY}`,
      `    fetchBatchSize: ${FETCH_BATCH_SIZE}`,
      '',
    ].join('\n'),
  );
  let output = '';
  const child = spawn(process.execPath, ['--import', 'tsx', CLI_MAIN, 'run', config], {
    cwd: ROOT,
    env: { ...process.env, BENCH_W6_OUT: dir, BENCH_W6_TOTAL: String(total), TXOUTBOX_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const collect = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      resolve();
    });
  });
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  try {
    await until(
      `${W6_PROCESSES} consumer processes listening`,
      30_000,
      async () => {
        const { rows } = await ctx.producers.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%'`,
          [database],
        );
        return (rows[0]?.n ?? 0) >= W6_PROCESSES;
      },
      child,
      () => output,
    );
    await sleep(500);
    const client = await ctx.producers.connect();
    await ctx.meter.start();
    let started: number;
    try {
      await client.query('BEGIN');
      for (let from = 0; from < total; from += 1000) {
        await ctx.instance.publishBatch(
          client,
          Array.from({ length: Math.min(1000, total - from) }, (_, i) => from + i),
        );
      }
      await client.query('COMMIT');
      started = performance.now();
    } finally {
      client.release();
    }
    await until(
      'the backlog to drain',
      ctx.sizes.timeoutMs,
      async () => {
        const { rows } = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM txoutbox.outbox');
        return rows[0]?.n === 0;
      },
      child,
      () => output,
    );
    const seconds = (performance.now() - started) / 1000;
    ctx.meter.markEnd();
    child.kill('SIGTERM');
    const stopped = await withTimeout(exited, STOP_TIMEOUT_MS);
    const counts = new Uint32Array(total);
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.bin'))) {
      // Copy out of the Buffer: a small file's Buffer is a view into Node's shared pool.
      const part = new Uint16Array(Uint8Array.from(readFileSync(join(dir, file))).buffer);
      for (let n = 0; n < total; n += 1) counts[n] = (counts[n] ?? 0) + (part[n] ?? 0);
    }
    let duplicates = 0;
    let losses = 0;
    for (const count of counts) {
      if (count === 0) losses += 1;
      else duplicates += count - 1;
    }
    return {
      messages: total,
      seconds,
      duplicates,
      losses,
      remaining: 0,
      // A note takes the run out of the medians and fails the quick test: a runner that ignores
      // SIGTERM is a bug to see, whatever its throughput.
      ...(stopped ? {} : { note: `txoutbox run did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM; killed` }),
    };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  }
}
