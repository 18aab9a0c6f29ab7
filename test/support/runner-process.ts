import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

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
  waitForLog(predicate: (line: LogLine) => boolean, what: string, timeoutMs?: number): Promise<LogLine>;
}

export function spawnRunner(configPath: string, env: Record<string, string>): RunnerProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'run', configPath], {
    cwd: REPO,
    env: { ...process.env, TXOUTBOX_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
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
  child.stderr.on('data', onData);
  child.stdout.on('data', onData);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
    });
  });
  const find = (predicate: (line: LogLine) => boolean) => logs.find(predicate);
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
    async waitForLog(predicate, what, timeoutMs = 20_000) {
      await waitFor(() => find(predicate) !== undefined || child.exitCode !== null, { timeoutMs, what });
      const line = find(predicate);
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
