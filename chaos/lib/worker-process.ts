/**
 * A chaos worker (worker/worker-main.ts) as the harness drives it: started with its spec, pinged,
 * asked to stop with a bound on how long stop() may take, killed. It runs in a process group of its
 * own (processes.ts) and writes its logs to the scenario's log file.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { type FromWorker, isFromWorker, type WorkerHeartbeat, type WorkerSpec } from '../worker/protocol.js';
import { within } from './bounded.js';
import { killTrackedGroup, trackGroup } from './processes.js';
import { HARNESS_ROOT } from './product.js';

const WORKER_MAIN = join(HARNESS_ROOT, 'chaos', 'worker', 'worker-main.ts');

export class WorkerProcess {
  readonly spec: WorkerSpec;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  heartbeat: WorkerHeartbeat | undefined;
  readonly #child: ChildProcess;
  readonly #waiters = new Set<(message: FromWorker) => void>();
  readonly #logPath: string;
  /** stop() was asked for or the harness killed it: an exit is expected. */
  #ending = false;
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  private constructor(child: ChildProcess, spec: WorkerSpec, logPath: string) {
    this.#child = child;
    this.spec = spec;
    this.#logPath = logPath;
    child.on('message', (message) => {
      if (!isFromWorker(message)) return;
      if (message.type === 'heartbeat') this.heartbeat = message;
      for (const waiter of this.#waiters) waiter(message);
    });
    child.on('error', () => undefined);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#exit = { code, signal };
        resolve({ code, signal });
      });
    });
  }

  /** Forks a worker and waits (bounded) until its Outbox runs; throws when it cannot start. */
  static async start(spec: WorkerSpec, logPath: string, readyBoundMs: number): Promise<WorkerProcess> {
    const log = openSync(logPath, 'a');
    const child = fork(WORKER_MAIN, [], {
      cwd: HARNESS_ROOT,
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', log, log, 'ipc'],
      detached: true,
    });
    closeSync(log);
    if (child.pid === undefined) throw new Error('the worker did not start');
    trackGroup(child.pid);
    const worker = new WorkerProcess(child, spec, logPath);
    child.send({ type: 'start', spec });
    const reply = await worker.#next((m) => m.type === 'ready' || m.type === 'fatal', readyBoundMs);
    if (reply?.type !== 'ready') {
      worker.kill();
      throw new Error(
        reply?.type === 'fatal'
          ? `the worker failed to start: ${reply.message}`
          : `the worker was not ready within ${readyBoundMs} ms`,
      );
    }
    return worker;
  }

  get pid(): number {
    return this.#child.pid ?? 0;
  }

  get alive(): boolean {
    return this.#exit === undefined;
  }

  /** It exited without being asked to stop or killed: a crash. */
  get crashed(): boolean {
    return this.#exit !== undefined && !this.#ending;
  }

  /** The first line of the uncaught error in its log, for a report. */
  crashReason(): string {
    return crashLine(readFileSync(this.#logPath, 'utf8'));
  }

  async #next(predicate: (message: FromWorker) => boolean, ms: number): Promise<FromWorker | undefined> {
    let waiter: ((message: FromWorker) => void) | undefined;
    const reply = new Promise<FromWorker>((resolve) => {
      waiter = (message) => {
        if (predicate(message)) resolve(message);
      };
      this.#waiters.add(waiter);
    });
    try {
      return (await within(Promise.race([reply, this.exited.then(() => undefined)]), ms))?.value;
    } finally {
      if (waiter !== undefined) this.#waiters.delete(waiter);
    }
  }

  #send(message: unknown): boolean {
    if (this.#exit !== undefined || !this.#child.connected) return false;
    this.#child.send(message as object);
    return true;
  }

  /** outbox.ping() in the worker; undefined when it did not answer within `ms`. */
  async ping(ms: number): Promise<{ ok: boolean; ms: number } | undefined> {
    if (!this.#send({ type: 'ping' })) return undefined;
    const reply = await this.#next((m) => m.type === 'pong', ms);
    return reply?.type === 'pong' ? { ok: reply.ok, ms: reply.ms } : undefined;
  }

  /** Asks for stop(); resolves with how long it took, or undefined when it had not returned after `ms`. */
  async stop(ms: number): Promise<{ ms: number; events: Readonly<Record<string, number>> } | undefined> {
    this.#ending = true;
    if (!this.#send({ type: 'stop' })) return undefined;
    const reply = await this.#next((m) => m.type === 'stopped', ms);
    return reply?.type === 'stopped' ? { ms: reply.ms, events: reply.events } : undefined;
  }

  kill(): void {
    this.#ending = true;
    killTrackedGroup(this.pid);
  }
}

/** The first line of a log that reads like an error and is not one of the product's JSON log lines. */
export function crashLine(log: string): string {
  const lines = log.split('\n').filter((line) => !line.startsWith('{'));
  const line = lines.find((l) => /^\w*(Error|error)\b|^error:/.test(l.trim())) ?? lines.findLast((l) => l.trim() !== '');
  return (line ?? 'no output').trim().slice(0, 300);
}
