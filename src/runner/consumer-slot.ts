import { type ChildProcess, fork } from 'node:child_process';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

import { backoffMs } from '../util/backoff.js';
import type { Logger } from '../util/logger.js';
import type { MetricsLedger } from './metrics/metrics-ledger.js';
import { type ChildSpec, isChildMessage } from './protocol.js';

/** The child entry beside this file: child-main.ts under tsx (tests, npm start), child-main.js when built. */
const CHILD_ENTRY = fileURLToPath(new URL(`./child/child-main${extname(fileURLToPath(import.meta.url))}`, import.meta.url));

export interface RestartPolicy {
  readonly restartInitialDelayMs: number;
  readonly restartMaxDelayMs: number;
  /** This many exits within crashLoopWindowMs is a crash loop: logged, and backed off to the maximum. */
  readonly crashLoopExits: number;
  readonly crashLoopWindowMs: number;
}

export interface SlotDeps {
  readonly policy: RestartPolicy;
  readonly ledger: MetricsLedger;
  readonly logger: Logger;
  /** Called when the slot restarts its process after an unexpected exit. */
  readonly onRestart: (consumer: string) => void;
}

/**
 * One process of a consumer, kept running: forks the child, restarts it with backoff when it exits
 * unexpectedly, and stops it on request.
 *
 * States:
 *   starting  forked, waiting for `ready`          ready → running; exit → backoff
 *   running   consuming                            exit → backoff; stop() → stopping
 *   backoff   waiting to fork again                timer → starting; stop() → stopped
 *   stopping  SIGTERM sent, draining               exit → stopped
 *   stopped   no process, none wanted
 * Every exit retires the child's metrics into the ledger's baseline, so counters carry over.
 */
export class ConsumerSlot {
  readonly consumer: string;
  #spec: ChildSpec;
  readonly #deps: SlotDeps;
  #state: 'starting' | 'running' | 'backoff' | 'stopping' | 'stopped' = 'stopped';
  #child: ChildProcess | undefined;
  #childId = '';
  #timer: NodeJS.Timeout | undefined;
  #exits: number[] = [];
  #exited: Promise<void> = Promise.resolve();
  #readyWaiters: (() => void)[] = [];

  constructor(spec: ChildSpec, deps: SlotDeps) {
    this.consumer = spec.consumer;
    this.#spec = spec;
    this.#deps = deps;
  }

  /** True while a process exists for this slot (starting, running or draining). */
  get alive(): boolean {
    return this.#child !== undefined;
  }

  get ready(): boolean {
    return this.#state === 'running';
  }

  /** The spec the slot's process runs (or will run when restarted). */
  get spec(): ChildSpec {
    return this.#spec;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  start(spec: ChildSpec = this.#spec): void {
    this.#spec = spec;
    if (this.#state !== 'stopped') return;
    this.#spawn();
  }

  /** Resolves when the process reported ready, or exited (then a restart is pending). */
  whenReadyOrExited(): Promise<void> {
    if (this.#state !== 'starting') return Promise.resolve();
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  #spawn(): void {
    this.#state = 'starting';
    const child = fork(CHILD_ENTRY, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: process.execArgv });
    this.#child = child;
    const id = `${this.consumer}/${child.pid ?? 'unknown'}/${Date.now()}`;
    this.#childId = id;
    this.#deps.logger.info({ consumer: this.consumer, pid: child.pid }, 'consumer process started');
    this.#exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#onExit(id, child.pid, code, signal);
        resolve();
      });
    });
    child.on('message', (message) => {
      if (!isChildMessage(message)) return;
      if (message.type === 'metrics') this.#deps.ledger.report(id, message.snapshot);
      else if (message.type === 'ready') this.#onReady();
      else this.#deps.logger.error({ consumer: this.consumer, pid: child.pid, err: message.message }, 'consumer failed to start');
    });
    // A child killed before it read the message makes send() fail with EPIPE: the exit handler restarts it.
    child.on('error', (error) => {
      this.#deps.logger.warn({ consumer: this.consumer, pid: child.pid, err: error.message }, 'consumer process channel error');
    });
    child.send({ type: 'start', spec: this.#spec });
  }

  #onReady(): void {
    if (this.#state === 'starting') this.#state = 'running';
    for (const resolve of this.#readyWaiters.splice(0)) resolve();
  }

  #onExit(id: string, pid: number | undefined, code: number | null, signal: NodeJS.Signals | null): void {
    this.#deps.logger.info({ consumer: this.consumer, pid, code, signal }, 'consumer process exited');
    this.#deps.ledger.retire(id);
    if (this.#childId === id) this.#child = undefined;
    for (const resolve of this.#readyWaiters.splice(0)) resolve();
    if (this.#state === 'stopping' || this.#state === 'stopped') {
      this.#state = 'stopped';
      return;
    }
    const now = Date.now();
    const { policy } = this.#deps;
    this.#exits = [...this.#exits.filter((at) => now - at < policy.crashLoopWindowMs), now];
    const crashLoop = this.#exits.length >= policy.crashLoopExits;
    const delayMs = crashLoop
      ? policy.restartMaxDelayMs
      : backoffMs(this.#exits.length, policy.restartInitialDelayMs, policy.restartMaxDelayMs);
    const fields = { consumer: this.consumer, code, signal, restartInMs: Math.round(delayMs), recentExits: this.#exits.length };
    if (crashLoop) this.#deps.logger.error(fields, 'consumer is crash-looping; backing off to the maximum delay');
    else this.#deps.logger.warn(fields, 'consumer process exited unexpectedly; restarting');
    this.#state = 'backoff';
    this.#timer = setTimeout(() => {
      if (this.#state !== 'backoff') return;
      this.#deps.onRestart(this.consumer);
      this.#spawn();
    }, delayMs);
  }

  /** SIGTERM: the child drains within its graceful timeout. Resolves when it exited. */
  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    if (this.#child === undefined) {
      this.#state = 'stopped';
      return;
    }
    this.#state = 'stopping';
    this.#child.kill('SIGTERM');
    await this.#exited;
  }

  /** SIGKILL whatever is left: the supervisor's hard deadline passed. Rows keep their leases. */
  kill(): void {
    clearTimeout(this.#timer);
    this.#state = 'stopping';
    this.#child?.kill('SIGKILL');
  }
}
