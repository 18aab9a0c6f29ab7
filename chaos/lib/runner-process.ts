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

/**
 * What chaos/handlers/broken-handler.ts throws on import: a consumer process that failed to start
 * with it exited because the harness pointed the consumer at it, not because the product failed.
 */
export const BROKEN_HANDLER_ERROR = 'chaos: this handler module is broken on purpose (throws on import)';

export type Exit = { readonly code: number | null; readonly signal: NodeJS.Signals | null };

/** What the harness did to a runner, for telling the exits it caused from those it did not. */
export interface HarnessActs {
  /** Consumer pids the harness SIGKILLed itself (killConsumer). */
  readonly killedConsumers: ReadonlySet<number>;
  /** The first SIGTERM or SIGHUP the harness sent the runner (epoch ms): the runner drains processes then. */
  readonly drainAskedAt: number | undefined;
  /** The first SIGTERM the harness sent the runner (epoch ms): it stops every process then, started or not. */
  readonly stopAskedAt: number | undefined;
  /** When the harness SIGKILLed the group or sent a second stop signal (epoch ms): every process dies then. */
  readonly allKilledAt: number | undefined;
}

/**
 * How `txoutbox run` ended after the harness's SIGTERM. `escalated` is the runner's own, documented
 * escalation (architecture/runner.md, Signals): consumers that had not drained gracefulTimeoutMs +
 * 5 s in were SIGKILLed, `runner stopped` is logged with `drained: false`, and the exit code is 1.
 * Anything else that is not a clean exit is `failed`: an error thrown in stop(), which main() also
 * turns into exit 1 but with no `runner stopped` line; a death by a signal (the runner handles
 * SIGTERM: dying of it, or of one the harness never sent, is no drain).
 */
export function stopOutcome(
  exit: Exit,
  logs: readonly LogLine[],
): { readonly kind: 'drained' } | { readonly kind: 'escalated' } | { readonly kind: 'failed'; readonly why: string } {
  if (exit.signal !== null) return { kind: 'failed', why: `died of ${exit.signal}` };
  const stopped = logs.findLast((l) => l.msg === 'runner stopped');
  if (exit.code === 0) return { kind: 'drained' };
  if (exit.code === 1 && stopped?.drained === false) return { kind: 'escalated' };
  return {
    kind: 'failed',
    why:
      `exited with code ${String(exit.code)} ` +
      (stopped === undefined
        ? 'without logging "runner stopped"'
        : `after "runner stopped" with drained: ${String(stopped.drained)}`),
  };
}

/**
 * The consumer exits in a runner's log (`consumer process exited`, with its code and signal) that
 * neither a clean exit nor the harness explains: a crash, a death by a signal nobody sent, a process
 * the runner killed for not starting. Explained, and left out: exit code 0; a SIGKILL of a pid the
 * harness killed itself; anything once the harness killed everything; once the harness asked for a
 * drain (a SIGTERM or a SIGHUP: nothing else makes the runner drain), a SIGKILL at the runner's own
 * drain deadline (`consumer process did not drain before its deadline`; returned in `escalations`);
 * once it sent the runner SIGTERM, any exit of a process that never logged `consumer running`: one
 * stopped while it started dies of the SIGTERM before its handler is installed, or its start fails
 * on the Outbox being stopped (`consumer failed to start`, exit 1); an exit 1 of a process that
 * failed to start with the harness's broken module.
 */
export function unexplainedConsumerExits(
  logs: readonly LogLine[],
  acts: HarnessActs,
): { readonly unexplained: string[]; readonly escalations: number[] } {
  const running = new Set<number>();
  const overdue = new Set<number>();
  const broken = new Set<number>();
  for (const line of logs) {
    if (typeof line.pid !== 'number') continue;
    if (line.msg === 'consumer running') running.add(line.pid);
    else if (typeof line.msg === 'string' && line.msg.startsWith('consumer process did not drain before its deadline'))
      overdue.add(line.pid);
    else if (line.msg === 'consumer failed to start' && typeof line.err === 'string' && line.err.includes(BROKEN_HANDLER_ERROR))
      broken.add(line.pid);
  }
  const unexplained: string[] = [];
  const escalations: number[] = [];
  for (const line of logs) {
    if (line.msg !== 'consumer process exited' || typeof line.pid !== 'number') continue;
    const code = typeof line.code === 'number' ? line.code : null;
    const signal = typeof line.signal === 'string' ? line.signal : null;
    if (code === 0) continue;
    const at = typeof line.time === 'string' ? Date.parse(line.time) : Number.NaN;
    if (acts.allKilledAt !== undefined && !(at < acts.allKilledAt)) continue;
    if (signal === 'SIGKILL' && acts.killedConsumers.has(line.pid)) continue;
    const drainAsked = acts.drainAskedAt !== undefined && at >= acts.drainAskedAt;
    if (signal === 'SIGKILL' && overdue.has(line.pid) && drainAsked) {
      escalations.push(line.pid);
      continue;
    }
    const stopAsked = acts.stopAskedAt !== undefined && at >= acts.stopAskedAt;
    if (stopAsked && !running.has(line.pid) && (signal === 'SIGTERM' || signal === null)) continue;
    if (code === 1 && broken.has(line.pid)) continue;
    unexplained.push(
      `consumer pid ${String(line.pid)} exited with ${signal === null ? `code ${String(code)}` : signal}` +
        (typeof line.time === 'string' ? ` at ${line.time}` : ''),
    );
  }
  return { unexplained, escalations };
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

/** Output lines that are not JSON log lines kept per runner (main()'s `txoutbox: <error>`, a stack). */
const KEPT_OUTPUT_LINES = 20;

export class RunnerProcess {
  readonly logs: LogLine[] = [];
  readonly exited: Promise<Exit>;
  readonly #child: ChildProcess;
  #exit: Exit | undefined;
  /** SIGTERM/SIGINT was sent or the harness killed it: an exit is expected. */
  #ending = false;
  readonly #output: string[] = [];
  readonly #killedConsumers = new Set<number>();
  #drainAskedAt: number | undefined;
  #stopAskedAt: number | undefined;
  #allKilledAt: number | undefined;
  readonly #outputEnded: Promise<void>;

  private constructor(child: ChildProcess, logPath: string) {
    this.#child = child;
    const log = createWriteStream(logPath, { flags: 'a' });
    // One line buffer per stream: a chunk of stderr must not be spliced into a line of stdout.
    const reader = (): ((chunk: Buffer) => void) => {
      let buffered = '';
      return (chunk) => {
        log.write(chunk);
        buffered += chunk.toString('utf8');
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) this.#line(line);
      };
    };
    child.stdout?.on('data', reader());
    child.stderr?.on('data', reader());
    // The consumers inherit these pipes: the runner's last lines may be read after its 'exit', and
    // a stray consumer may write after it. The log file is closed once nothing can write any more.
    const ended = (stream: NodeJS.ReadableStream | null): Promise<void> =>
      stream === null ? Promise.resolve() : new Promise((resolve) => stream.once('close', resolve));
    this.#outputEnded = Promise.all([ended(child.stdout), ended(child.stderr)]).then(() => {
      log.end();
    });
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#exit = { code, signal };
        resolve({ code, signal });
      });
    });
  }

  #line(line: string): void {
    if (!line.startsWith('{')) {
      if (line.trim() === '') return;
      this.#output.push(line.trim().slice(0, 300));
      if (this.#output.length > KEPT_OUTPUT_LINES) this.#output.shift();
      return;
    }
    try {
      this.logs.push(JSON.parse(line) as LogLine);
    } catch {
      // not a log line
    }
  }

  /**
   * Waits (up to `ms`) until its output pipes closed: every line it wrote before its exit has been
   * read. A consumer still alive holds them open, hence the bound.
   */
  async outputRead(ms: number): Promise<void> {
    await within(this.#outputEnded, ms);
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

  get exitStatus(): Exit | undefined {
    return this.#exit;
  }

  /** The last line of its output that is not a JSON log line (main()'s `txoutbox: <error>`), for a report. */
  lastOutput(): string | undefined {
    return this.#output.findLast((line) => /^txoutbox: |Error\b/.test(line)) ?? this.#output.at(-1);
  }

  /** SIGKILL to one of its consumer processes: an exit the harness caused, not the product. */
  killConsumer(pid: number): void {
    this.#killedConsumers.add(pid);
    process.kill(pid, 'SIGKILL');
  }

  /** Its consumers' exits that neither a clean exit nor the harness explains (unexplainedConsumerExits). */
  consumerExits(): ReturnType<typeof unexplainedConsumerExits> {
    return unexplainedConsumerExits(this.logs, {
      killedConsumers: this.#killedConsumers,
      drainAskedAt: this.#drainAskedAt,
      stopAskedAt: this.#stopAskedAt,
      allKilledAt: this.#allKilledAt,
    });
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
    const stop = signal === 'SIGTERM' || signal === 'SIGINT';
    // A second stop signal makes the runner SIGKILL every consumer (architecture/runner.md).
    if ((stop && this.#ending) || signal === 'SIGKILL') this.#allKilledAt ??= Date.now();
    if (stop || signal === 'SIGHUP') this.#drainAskedAt ??= Date.now();
    if (stop) this.#stopAskedAt ??= Date.now();
    if (stop || signal === 'SIGKILL') this.#ending = true;
    if (this.#exit === undefined) this.#child.kill(signal);
  }

  /** The exit, or undefined when the runner is still running after `ms`. */
  async waitExit(ms: number): Promise<Exit | undefined> {
    return (await within(this.exited, ms))?.value;
  }

  /** Consumer processes of this runner's group that are still alive (after it exited: strays). */
  consumersInGroup(): ProcessInfo[] {
    return listProcesses().filter((p) => p.pgid === this.pid && p.pid !== this.pid && p.cmdline.includes('child-main'));
  }

  /** SIGKILL to the runner's whole group. */
  kill(): void {
    this.#ending = true;
    this.#allKilledAt ??= Date.now();
    killTrackedGroup(this.pid);
  }
}
