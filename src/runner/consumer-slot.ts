import { type ChildProcess, fork } from 'node:child_process';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

import { backoffMs } from '../util/backoff.js';
import { beforeDeadline } from '../util/deadline.js';
import type { Logger } from '../util/logger.js';
import type { MetricsLedger } from './metrics/metrics-ledger.js';
import { type ChildSpec, isChildMessage } from './protocol.js';

/** The child entry beside this file: child-main.ts under tsx (tests, npm start), child-main.js when built. */
const CHILD_ENTRY = fileURLToPath(new URL(`./child/child-main${extname(fileURLToPath(import.meta.url))}`, import.meta.url));

/** How long past its graceful timeout a draining child may take before it is SIGKILLed. */
export const KILL_MARGIN_MS = 5_000;

/**
 * How long a SIGKILLed child may take to be reported gone. The kernel does not refuse SIGKILL, so
 * this only bounds a stop against a lost exit event: the runner must exit either way.
 */
const KILL_WAIT_MS = 5_000;

export interface RestartPolicy {
  readonly restartInitialDelayMs: number;
  readonly restartMaxDelayMs: number;
  /** This many exits within crashLoopWindowMs is a crash loop: logged, and backed off to the maximum. */
  readonly crashLoopExits: number;
  readonly crashLoopWindowMs: number;
  /** How long a reload's replacement process may take to report ready before the rollout gives up. */
  readonly replacementReadyTimeoutMs: number;
}

export interface SlotDeps {
  readonly policy: RestartPolicy;
  readonly ledger: MetricsLedger;
  readonly logger: Logger;
  /** Called when the slot restarts its process after an unexpected exit. */
  readonly onRestart: (consumer: string) => void;
  /** Forks a child process; tests pass a fake one to drive its events. Default: fork child-main. */
  readonly forkChild?: () => ChildProcess;
}

/** How a replacement's start ended: ready, or why not (the supervisor logs it). */
export type StartOutcome =
  | { readonly ready: true }
  | {
      readonly ready: false;
      readonly reason: 'exited';
      readonly pid: number | undefined;
      readonly code: number | null;
      readonly signal: NodeJS.Signals | null;
      /** What the child reported before it exited (its `fatal` message), when it did. */
      readonly error: string | undefined;
    }
  | { readonly ready: false; readonly reason: 'not_ready_in_time'; readonly pid: number | undefined; readonly timeoutMs: number }
  | { readonly ready: false; readonly reason: 'stopped' };

function forkChildMain(): ChildProcess {
  return fork(CHILD_ENTRY, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: process.execArgv });
}

/**
 * One process of a consumer, kept running: forks the child, restarts it with backoff when it exits
 * unexpectedly, and stops it on request within a deadline.
 *
 * States:
 *   idle      constructed, nothing forked               start() / startReplacement() → starting
 *   starting  forked, waiting for `ready`               ready → running; exit → backoff, or, for a
 *                                                       replacement, → stopped (the rollout learns why)
 *   running   consuming                                 exit → backoff
 *   backoff   waiting to fork again                     timer → starting
 *   stopping  SIGTERM sent, draining; SIGKILL after     exit → stopped
 *             gracefulTimeoutMs + KILL_MARGIN_MS
 *   stopped   terminal: no process, and none is ever forked again
 * stop() and kill() lead from any state to stopping (or straight to stopped when there is no
 * process). `ready` is running and the child's last `health` report up: a relay whose broker is down,
 * or a consumer whose database is, stays running (its rows wait in the table) but is not ready.
 * A child's metrics are retired into the ledger's baseline on its `close` — after its
 * IPC channel closed, so its last report, which may arrive after `exit`, is counted first (issue 13 item 13).
 */
export class ConsumerSlot {
  readonly consumer: string;
  readonly #spec: ChildSpec;
  readonly #deps: SlotDeps;
  #state: 'idle' | 'starting' | 'running' | 'backoff' | 'stopping' | 'stopped' = 'idle';
  #child: ChildProcess | undefined;
  #childError: string | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  #exits: number[] = [];
  #exited: Promise<void> = Promise.resolve();
  /** Settles a replacement's start; set from startReplacement() until the first outcome. */
  #settleStart: ((outcome: StartOutcome) => void) | undefined;
  #stopped: Promise<boolean> | undefined;
  #killed = false;
  /** The last health the current process reported (a new process starts up until it says otherwise). */
  #up = true;

  constructor(spec: ChildSpec, deps: SlotDeps) {
    this.consumer = spec.consumer;
    this.#spec = spec;
    this.#deps = deps;
  }

  /** True while a process exists for this slot (starting, running or draining). */
  get alive(): boolean {
    return this.#child !== undefined;
  }

  /** Running, and its last health report said up. */
  get ready(): boolean {
    return this.#state === 'running' && this.#up;
  }

  /** The spec the slot's process runs (or will run when restarted). */
  get spec(): ChildSpec {
    return this.#spec;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Forks the process and keeps it running: any exit before stop() is restarted with backoff. */
  start(): void {
    if (this.#state !== 'idle') return;
    this.#spawn();
  }

  /**
   * Forks the process on probation, for a reload: resolves ready once it reported ready (from then
   * on it is kept running like any other), or with why not when it exited before that (it is not
   * restarted: a module that fails to load would only fail again) or was not ready within
   * `policy.replacementReadyTimeoutMs` (it is being stopped), or the slot was stopped meanwhile.
   */
  startReplacement(): Promise<StartOutcome> {
    if (this.#state !== 'idle') return Promise.resolve({ ready: false, reason: 'stopped' });
    const timeoutMs = this.#deps.policy.replacementReadyTimeoutMs;
    const outcome = new Promise<StartOutcome>((resolve) => {
      const timer = setTimeout(() => {
        this.#settle({ ready: false, reason: 'not_ready_in_time', pid: this.pid, timeoutMs });
        void this.stop();
      }, timeoutMs);
      this.#settleStart = (result) => {
        clearTimeout(timer);
        this.#settleStart = undefined;
        resolve(result);
      };
    });
    this.#spawn();
    return outcome;
  }

  #settle(outcome: StartOutcome): void {
    this.#settleStart?.(outcome);
  }

  #spawn(): void {
    this.#state = 'starting';
    this.#childError = undefined;
    this.#up = true;
    const child = (this.#deps.forkChild ?? forkChildMain)();
    this.#child = child;
    const id = `${this.consumer}/${child.pid ?? 'unknown'}/${Date.now()}`;
    this.#deps.logger.info({ consumer: this.consumer, pid: child.pid }, 'consumer process started');
    this.#exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#onExit(child, code, signal);
        resolve();
      });
    });
    // Not on 'exit': messages still in the channel are delivered after it, and a report that came
    // after retire() would be lost (the ledger ignores it; before, it resurrected the child).
    child.once('close', () => {
      this.#deps.ledger.retire(id);
    });
    child.on('message', (message) => {
      if (!isChildMessage(message)) return;
      if (message.type === 'metrics') this.#deps.ledger.report(id, message.snapshot);
      else if (message.type === 'ready') this.#onReady();
      else if (message.type === 'health') this.#onHealth(child, message.up);
      else {
        this.#childError = message.message;
        this.#deps.logger.error({ consumer: this.consumer, pid: child.pid, err: message.message }, 'consumer failed to start');
      }
    });
    // A child killed before it read the message makes send() fail with EPIPE: the exit handler restarts it.
    child.on('error', (error) => {
      this.#deps.logger.warn({ consumer: this.consumer, pid: child.pid, err: error.message }, 'consumer process channel error');
    });
    child.send({ type: 'start', spec: this.#spec });
  }

  /** A child's ping() result: logged when it changes; a process that is not up does not count as ready. */
  #onHealth(child: ChildProcess, up: boolean): void {
    if (this.#child !== child || up === this.#up) return;
    this.#up = up;
    if (up) this.#deps.logger.info({ consumer: this.consumer, pid: child.pid }, 'consumer process is up again');
    else {
      this.#deps.logger.warn(
        { consumer: this.consumer, pid: child.pid },
        "consumer process is not up: its ping() failed (the database, its subscription's loop, or a relay's sink); not ready until it passes",
      );
    }
  }

  #onReady(): void {
    if (this.#state !== 'starting') return;
    this.#state = 'running';
    this.#settle({ ready: true });
  }

  #onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    this.#deps.logger.info({ consumer: this.consumer, pid: child.pid, code, signal }, 'consumer process exited');
    if (this.#child === child) this.#child = undefined;
    if (this.#state === 'stopping' || this.#state === 'stopped') {
      this.#state = 'stopped';
      return;
    }
    if (this.#state === 'starting' && this.#settleStart !== undefined) {
      this.#state = 'stopped';
      this.#settle({ ready: false, reason: 'exited', pid: child.pid, code, signal, error: this.#childError });
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
    this.#restartTimer = setTimeout(() => {
      if (this.#state !== 'backoff') return;
      this.#deps.onRestart(this.consumer);
      this.#spawn();
    }, delayMs);
  }

  /**
   * SIGTERM: the child drains within its graceful timeout; SIGKILL when it is still there
   * KILL_MARGIN_MS later. Resolves true when it drained in time (or there was no process), false
   * when it had to be killed. Idempotent; the slot never forks again.
   */
  stop(): Promise<boolean> {
    this.#stopped ??= this.#drain();
    return this.#stopped;
  }

  /** SIGKILL now (a second stop signal): its rows keep their leases and come back after them. */
  kill(): Promise<boolean> {
    this.#killed = true;
    this.#child?.kill('SIGKILL');
    return this.stop();
  }

  async #drain(): Promise<boolean> {
    clearTimeout(this.#restartTimer);
    this.#settle({ ready: false, reason: 'stopped' });
    const child = this.#child;
    if (child === undefined) {
      this.#state = 'stopped';
      return true;
    }
    this.#state = 'stopping';
    if (!this.#killed) child.kill('SIGTERM');
    const deadlineMs = this.#spec.gracefulTimeoutMs + KILL_MARGIN_MS;
    const inTime = await beforeDeadline(
      this.#exited.then(() => true),
      deadlineMs,
      () => false,
    );
    if (!inTime) {
      this.#deps.logger.error(
        { consumer: this.consumer, pid: child.pid, deadlineMs },
        'consumer process did not drain before its deadline; killing it (its rows are redelivered after the lease)',
      );
      child.kill('SIGKILL');
      const gone = await beforeDeadline(
        this.#exited.then(() => true),
        KILL_WAIT_MS,
        () => false,
      );
      if (!gone)
        this.#deps.logger.error({ consumer: this.consumer, pid: child.pid }, 'consumer process still not gone after SIGKILL');
    }
    this.#state = 'stopped';
    return inTime && !this.#killed;
  }
}
