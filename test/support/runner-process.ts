import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';

import { Outbox } from '../../src/index.js';
import type { TestDatabase } from './database.js';
import { inTransaction } from './transaction.js';
import { waitFor } from './wait-for.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

export interface LogLine {
  readonly level: string;
  readonly msg: string;
  readonly [field: string]: unknown;
}

/** `txoutbox run <config>` as a real process (signals are the interface under test). */
export interface RunnerProcess {
  readonly child: ChildProcess;
  readonly logs: LogLine[];
  /** Everything it wrote to stderr that was not a JSON log line. */
  readonly otherOutput: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  metricsUrl(): string;
  /** Live consumer pids by consumer, from its "consumer process started/exited" logs. */
  livePids(consumer: string): number[];
  /** The first line (from index `since` of `logs` on, default 0) that matches. */
  waitForLog(
    predicate: (line: LogLine) => boolean,
    what: string,
    options?: { readonly timeoutMs?: number; readonly since?: number },
  ): Promise<LogLine>;
}

/**
 * A child process's JSON log lines (stdout and stderr, split at newlines; a line that is not JSON
 * goes to otherOutput) and its exit.
 */
export function collectJsonLogs(child: ChildProcess): {
  readonly logs: LogLine[];
  readonly otherOutput: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
} {
  const logs: LogLine[] = [];
  const otherOutput: string[] = [];
  let buffered = '';
  const onData = (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) {
      if (line.trim() === '') continue;
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        otherOutput.push(line);
      }
    }
  };
  child.stderr?.on('data', onData);
  child.stdout?.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
    });
  });
  return { logs, otherOutput, exited };
}

/** `detached`: the runner leads a process group of its own, which a test can signal as a whole. */
export function spawnRunner(configPath: string, env: Record<string, string>, { detached = false } = {}): RunnerProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'run', configPath], {
    cwd: REPO,
    env: { ...process.env, TXOUTBOX_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached,
  });
  const { logs, otherOutput, exited } = collectJsonLogs(child);
  const find = (predicate: (line: LogLine) => boolean, since = 0) => logs.slice(since).find(predicate);
  return {
    child,
    logs,
    otherOutput,
    exited,
    metricsUrl() {
      const started = find((line) => line.msg === 'runner started');
      if (started === undefined || typeof started.metrics !== 'string') throw new Error('the runner has not started');
      return started.metrics;
    },
    livePids(consumer) {
      const pids = new Set<number>();
      for (const line of logs) {
        if (line.consumer !== consumer || typeof line.pid !== 'number') continue;
        if (line.msg === 'consumer process started') pids.add(line.pid);
        if (line.msg === 'consumer process exited') pids.delete(line.pid);
      }
      return [...pids];
    },
    async waitForLog(predicate, what, { timeoutMs = 20_000, since = 0 } = {}) {
      try {
        await waitFor(() => find(predicate, since) !== undefined || child.exitCode !== null, { timeoutMs, what });
      } catch (error) {
        const last = logs.slice(Math.max(since, logs.length - 15)).map((l) => JSON.stringify(l));
        throw new Error(`${(error as Error).message}; the runner's last lines:\n${last.join('\n')}`, { cause: error });
      }
      const line = find(predicate, since);
      if (line === undefined) {
        throw new Error(
          `runner exited (${child.exitCode}) before ${what}:\n${[...logs.map((l) => JSON.stringify(l)), ...otherOutput].join('\n')}`,
        );
      }
      return line;
    },
  };
}

/** One sample of a Prometheus text exposition. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Parses the text format's sample lines (enough for the tests; promtool checks the format itself). */
export function parseSamples(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (match === null) throw new Error(`unparseable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1] ?? ''] = pair[2] ?? '';
    }
    samples.push({ name: match[1] ?? '', labels, value: Number(match[3]) });
  }
  return samples;
}

export async function scrape(url: string): Promise<Sample[]> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
  return parseSamples(await response.text());
}

/** The sum of a metric's samples whose labels include `where`. */
export function total(samples: readonly Sample[], name: string, where: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(where).every(([key, value]) => s.labels[key] === value))
    .reduce((sum, s) => sum + s.value, 0);
}

/** True while a process with this pid exists (signal 0 only checks). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const HANDLERS = fileURLToPath(new URL('../fixtures/runner/handlers.ts', import.meta.url));

export interface ConsumerShape {
  readonly queue: string;
  readonly export: string;
  readonly processes: number;
  /** The handler module; default test/fixtures/runner/handlers.ts. */
  readonly handler?: string;
  /** default 4; a different value is a changed spec, which a reload rolls out. */
  readonly concurrency?: number;
  /** default 3000 */
  readonly leaseTtlMs?: number;
}

export interface ConfigOptions {
  readonly statsdPort?: number;
  /** default 5000 */
  readonly gracefulTimeoutMs?: number;
  /** The config's `schemas:` (a module path); default none. */
  readonly schemas?: string;
}

/**
 * What the runner tests share: config files in a directory of their own, an outbox table per test,
 * the `handled` table the fixture handlers write, and runner processes SIGKILLed after the file
 * if a failed assertion left them running.
 */
export function runnerTestKit(db: TestDatabase) {
  const dir = mkdtempSync(join(tmpdir(), 'txoutbox-runner-'));
  const running: RunnerProcess[] = [];
  after(() => {
    for (const runner of running) if (runner.child.exitCode === null) runner.child.kill('SIGKILL');
  });

  return {
    dir,
    running,
    writeConfig: (name: string, table: string, consumers: Record<string, ConsumerShape>, options: ConfigOptions = {}): string => {
      const { statsdPort, gracefulTimeoutMs = 5000, schemas } = options;
      const lines = [
        'database:',
        '  url: ${RUNNER_TEST_DATABASE_URL}',
        `table: ${table}`,
        `gracefulTimeoutMs: ${gracefulTimeoutMs}`,
        'metrics:',
        '  prometheus:',
        '    port: 0',
        ...(statsdPort === undefined ? [] : ['  statsd:', '    host: 127.0.0.1', `    port: ${statsdPort}`, '    prefix: shop']),
        ...(schemas === undefined ? [] : [`schemas: ${schemas}`]),
        'consumers:',
      ];
      for (const [consumer, shape] of Object.entries(consumers)) {
        lines.push(
          `  ${consumer}:`,
          `    handler: ${shape.handler ?? HANDLERS}`,
          `    export: ${shape.export}`,
          `    queues: [${shape.queue}]`,
          `    processes: ${shape.processes}`,
          `    concurrency: ${shape.concurrency ?? 4}`,
          '    fetchBatchSize: 20',
          `    leaseTtlMs: ${shape.leaseTtlMs ?? 3000}`,
          '    minPollIntervalMs: 50',
          '    maxPollIntervalMs: 200',
        );
      }
      const path = join(dir, `${name}.yaml`);
      writeFileSync(path, `${lines.join('\n')}\n`);
      return path;
    },

    prepare: async (table: string): Promise<Outbox> => {
      const outbox = new Outbox({ pool: db.pool, table });
      await outbox.migrate();
      await db.pool.query(
        'CREATE TABLE IF NOT EXISTS handled (id bigint NOT NULL, consumer text NOT NULL, pid integer NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (id, consumer))',
      );
      await db.pool.query('TRUNCATE handled');
      return outbox;
    },

    publishMany: async (outbox: Outbox, queue: string, count: number): Promise<void> => {
      for (let start = 0; start < count; start += 500) {
        const bodies = Array.from({ length: Math.min(500, count - start) }, (_, i) => ({ n: start + i }));
        await inTransaction(db.pool, (c) => outbox.publishBatch(c, queue, bodies));
      }
    },

    handledCount: async (consumer: string): Promise<number> => {
      const { rows } = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM handled WHERE consumer = $1', [consumer]);
      return Number(rows[0]?.n);
    },

    remainingRows: async (table: string): Promise<number> => {
      const { rows } = await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
      return Number(rows[0]?.n);
    },

    start: (config: string, env: Record<string, string> = {}, options: { detached?: boolean } = {}): RunnerProcess => {
      const runner = spawnRunner(config, { RUNNER_TEST_DATABASE_URL: db.url, ...env }, options);
      running.push(runner);
      return runner;
    },

    /** The runner serves, runs `consumers[c]` processes of each consumer, and /readyz says ready. */
    whenStarted: async (runner: RunnerProcess, consumers: Record<string, number>): Promise<void> => {
      await runner.waitForLog((line) => line.msg === 'runner started', 'the runner to start');
      await waitFor(
        async () => {
          const samples = await scrape(runner.metricsUrl());
          return Object.entries(consumers).every(
            ([consumer, n]) => total(samples, 'txoutbox_consumer_processes', { consumer }) === n,
          );
        },
        { timeoutMs: 20_000, intervalMs: 100, what: 'every consumer process to be up' },
      );
      await waitFor(async () => (await fetch(runner.metricsUrl().replace('/metrics', '/readyz'))).status === 200, {
        timeoutMs: 20_000,
        intervalMs: 100,
        what: '/readyz to report ready',
      });
    },
  };
}
