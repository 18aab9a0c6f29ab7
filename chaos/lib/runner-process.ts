/**
 * `txoutbox run <config>` from the product's tree, as operators run it: a real process with real
 * children, driven by signals. It runs in a process group of its own (processes.ts), so its
 * children can be found after it exits (a consumer left running is a stray) and killed with it.
 * Its JSON log lines are kept for the scenario (pids, readiness) and appended to the log file.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { within } from './bounded.js';
import { QUEUE } from './ledger-sql.js';
import { isAlive, killTrackedGroup, listProcesses, type ProcessInfo, trackGroup } from './processes.js';
import { HARNESS_ROOT } from './product.js';

export interface LogLine {
  readonly level?: string;
  readonly msg?: string;
  readonly pid?: number;
  readonly [field: string]: unknown;
}

/** The consumer's shape in the YAML (see architecture/runner.md for the keys). */
export interface RunnerShape {
  readonly processes: number;
  readonly concurrency: number;
  readonly fetchBatchSize: number;
  readonly leaseTtlMs: number;
  readonly gracefulTimeoutMs: number;
  /** `chain`: the chain handler; `broken`: a module that throws on import. */
  readonly handler: 'chain' | 'broken';
  /** How long each chain handler run works before its transaction (the environment, not the YAML). */
  readonly handlerDelayMs: number;
}

const HANDLERS = {
  chain: join(HARNESS_ROOT, 'chaos', 'handlers', 'runner-handler.ts'),
  broken: join(HARNESS_ROOT, 'chaos', 'handlers', 'broken-handler.ts'),
} as const;

/** Writes the runner's YAML; the database URL comes from the environment (CHAOS_DATABASE_URL). */
export function writeRunnerConfig(path: string, shape: RunnerShape): void {
  const lines = [
    'database:',
    '  url: ${CHAOS_DATABASE_URL}',
    '  poolSize: 4',
    'table: public.outbox',
    `gracefulTimeoutMs: ${shape.gracefulTimeoutMs}`,
    'metrics:',
    '  prometheus:',
    '    port: 0',
    'consumers:',
    '  chaos:',
    `    handler: ${HANDLERS[shape.handler]}`,
    `    queues: [${QUEUE}]`,
    `    processes: ${shape.processes}`,
    `    concurrency: ${shape.concurrency}`,
    `    fetchBatchSize: ${shape.fetchBatchSize}`,
    `    leaseTtlMs: ${shape.leaseTtlMs}`,
    '    minPollIntervalMs: 100',
    '    maxPollIntervalMs: 1000',
  ];
  writeFileSync(path, `${lines.join('\n')}\n`);
}

export class RunnerProcess {
  readonly logs: LogLine[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #child: ChildProcess;
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** SIGTERM/SIGINT was sent or the harness killed it: an exit is expected. */
  #ending = false;

  private constructor(child: ChildProcess, logPath: string) {
    this.#child = child;
    const log = createWriteStream(logPath, { flags: 'a' });
    let buffered = '';
    const onData = (chunk: Buffer): void => {
      log.write(chunk);
      buffered += chunk.toString('utf8');
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        if (!line.startsWith('{')) continue;
        try {
          this.logs.push(JSON.parse(line) as LogLine);
        } catch {
          // not a log line
        }
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#exit = { code, signal };
        log.end();
        resolve({ code, signal });
      });
    });
  }

  /** Starts `txoutbox run configPath` from the product's tree with `env` added. */
  static spawn(productRoot: string, configPath: string, env: Record<string, string>, logPath: string): RunnerProcess {
    const child = spawn(process.execPath, ['--import', 'tsx', join('src', 'cli', 'main.ts'), 'run', configPath], {
      cwd: productRoot,
      env: { ...process.env, TXOUTBOX_LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    if (child.pid === undefined) throw new Error('txoutbox run did not start');
    trackGroup(child.pid);
    return new RunnerProcess(child, logPath);
  }

  get pid(): number {
    return this.#child.pid ?? 0;
  }

  get exitStatus(): { code: number | null; signal: NodeJS.Signals | null } | undefined {
    return this.#exit;
  }

  /** Consumer pids started and not yet exited, by the supervisor's own log lines. */
  livePids(): number[] {
    const pids = new Set<number>();
    for (const line of this.logs) {
      if (typeof line.pid !== 'number') continue;
      if (line.msg === 'consumer process started') pids.add(line.pid);
      if (line.msg === 'consumer process exited') pids.delete(line.pid);
    }
    return [...pids].filter(isAlive);
  }

  /** Live consumer pids that logged "consumer running". */
  runningPids(): number[] {
    const running = new Set(this.logs.filter((l) => l.msg === 'consumer running').map((l) => l.pid));
    return this.livePids().filter((pid) => running.has(pid));
  }

  /** Waits until `count` consumers run; false when the bound ran out (or the runner exited). */
  async waitRunning(count: number, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && this.#exit === undefined) {
      if (this.runningPids().length >= count) return true;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return this.runningPids().length >= count;
  }

  /** It exited without being asked to or killed: a crash. */
  get crashed(): boolean {
    return this.#exit !== undefined && !this.#ending;
  }

  signal(signal: NodeJS.Signals): void {
    if (signal === 'SIGTERM' || signal === 'SIGINT' || signal === 'SIGKILL') this.#ending = true;
    if (this.#exit === undefined) this.#child.kill(signal);
  }

  /** The exit, or undefined when the runner is still running after `ms`. */
  async waitExit(ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
    return (await within(this.exited, ms))?.value;
  }

  /** Consumer processes of this runner's group that are still alive (after it exited: strays). */
  consumersInGroup(): ProcessInfo[] {
    return listProcesses().filter((p) => p.pgid === this.pid && p.pid !== this.pid && p.cmdline.includes('child-main'));
  }

  /** SIGKILL to the runner's whole group. */
  kill(): void {
    this.#ending = true;
    killTrackedGroup(this.pid);
  }
}
