import { type ChildProcess, fork } from 'node:child_process';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';

import { errorMessage } from '../errors.js';
import { PING_TIMEOUT_MS } from '../outbox.js';
import { backoffMs } from '../util/backoff.js';
import { beforeDeadline } from '../util/deadline.js';
import type { Logger } from '../util/logger.js';
import type { MetricsLedger } from './metrics/metrics-ledger.js';
import { type ChildSpec, isChildMessage } from './protocol.js';
import { SilenceWatch } from './silence-watch.js';

/** The child entry beside this file: child-main.ts under tsx (tests, npm start), child-main.js when built. */
const CHILD_ENTRY = fileURLToPath(new URL(`./child/child-main${extname(fileURLToPath(import.meta.url))}`, import.meta.url));

/** After a child said it is consuming: how long past its ping()'s bound `ready` may take before a warning. */
const CONSUMING_READY_MARGIN_MS = 5_000;

/**
 * After a child said it is consuming: when one that never reported ready is taken for wedged (an
 * endless loop in a handler, a deadlock) and SIGKILLed to start again. Far past any handler that
 * only blocks its loop for a while, which must not be killed mid-delivery; the later of 10 minutes
 * and ten ready timeouts.
 */
const CONSUMING_WEDGED_MS = 600_000;
const CONSUMING_WEDGED_TIMEOUTS = 10;

/** How many distinct metrics-report problems one process has logged before the rest are not. */
const MAX_LOGGED_METRICS_PROBLEMS = 20;

/** How long past its graceful timeout a draining child may take before it is SIGKILLed. */
export const KILL_MARGIN_MS = 5_000;

/**
 * How long a SIGKILLed child may take to be reported gone. The kernel does not refuse SIGKILL, so
 * this only bounds a stop against a lost exit event: the runner must exit either way.
 */
export const KILL_WAIT_MS = 5_000;

/**
 * A process that was up counts as down only after this many failed pings in a row (up again at the
 * first success): one slow ping (a busy pool, a slow database) is not an outage, and with
 * `processes: 1` a single sample would turn the whole runner's /readyz to 503. At one ping every
 * HEALTH_INTERVAL_MS (each bounded by 5 s), a real outage shows within about 30 s.
 */
export const HEALTH_DOWN_AFTER_FAILED_PINGS = 3;

export interface RestartPolicy {
  readonly restartInitialDelayMs: number;
  readonly restartMaxDelayMs: number;
  /** This many exits within crashLoopWindowMs is a crash loop: logged, and backed off to the maximum. */
  readonly crashLoopExits: number;
  readonly crashLoopWindowMs: number;
  /**
   * How long a reload's replacement process may take to report ready, with its ping() passing,
   * before the rollout gives up; and how long any other start may take to report ready before the
   * process is killed and started again (a handler module whose top-level await never settles).
   */
  readonly replacementReadyTimeoutMs: number;
  /**
   * A process that sent no health report for this long is not ready (its event loop blocked, the
   * process frozen): it reports one every HEALTH_INTERVAL_MS after a ping bounded by 5 s. Counted
   * in time the supervisor observed (SilenceWatch): a stall of its own loop is not the child's silence.
   */
  readonly healthSilenceMs: number;
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
  /** It reported ready, but its ping() (the database, a relay's sink) did not pass in time. */
  | { readonly ready: false; readonly reason: 'not_up_in_time'; readonly pid: number | undefined; readonly timeoutMs: number }
  | { readonly ready: false; readonly reason: 'stopped' };

/**
 * Loaded before anything else in a child (before tsx too, which takes a second or more to load the
 * child's modules): a SIGHUP is the supervisor's to act on (a reload). A child shares the runner's
 * process group, so a signal sent to the whole group (`kill -HUP -<pgid>`, an init that forwards
 * signals to the group, a closing terminal) reaches it too, and Node's default for SIGHUP ended
 * every child at once, mid-handler or while it loaded, each restarted as a crash. Not a group of
 * its own (`detached`): whoever SIGKILLs the runner's group (a harness, supervisord's killasgroup)
 * must take the children with it, a child whose event loop is blocked never sees the IPC channel
 * close. child-main.ts ignores SIGHUP too, for a child started another way.
 */
const IGNORE_SIGHUP = 'data:text/javascript,process.on("SIGHUP",()=>{})';

/**
 * A child's Node flags: the parent's, after IGNORE_SIGHUP's import. Not under Node 20's
 * --experimental-policy, whose manifest would have to list the data: URL (every child would fail
 * to start): there the child's own handler, once its modules loaded, is all.
 */
export function childExecArgv(parent: readonly string[] = process.execArgv): string[] {
  const early = parent.some((flag) => flag.startsWith('--experimental-policy')) ? [] : ['--import', IGNORE_SIGHUP];
  return [...early, ...parent];
}

function forkChildMain(): ChildProcess {
  return fork(CHILD_ENTRY, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: childExecArgv() });
}

/**
 * One process of a consumer, kept running: forks the child, restarts it with backoff when it exits
 * unexpectedly, and stops it on request within a deadline.
 *
 * States:
 *   idle      constructed, nothing forked               start() / startReplacement() → starting
 *   starting  forked, waiting for `ready`               ready → running; exit → backoff, or, for a
 *                                                       replacement, → stopped (the rollout learns why).
 *                                                       A replacement needs `ready` and its health up:
 *                                                       a relay whose sink cannot connect (a wrong
 *                                                       broker host) must not take a healthy process's
 *                                                       place, so it stays here until its ping() passes
 *   running   consuming                                 exit → backoff
 *   backoff   waiting to fork again                     timer → starting
 *   stopping  SIGTERM sent, draining; SIGKILL after     exit → stopped
 *             gracefulTimeoutMs + KILL_MARGIN_MS
 *   stopped   terminal: no process, and none is ever forked again
 * stop() and kill() lead from any state to stopping (or straight to stopped when there is no
 * process). `ready` is running and the child's health up: up from its first passing ping, down from
 * its first report if it never passed one, else after HEALTH_DOWN_AFTER_FAILED_PINGS failed pings in
 * a row. A relay whose broker is down, or a consumer whose database is, stays running (its rows wait
 * in the table) but is not ready.
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
  /** What the current process's metrics reports had left out, each logged once (bounded). */
  readonly #metricsProblems = new Set<string>();
  #restartTimer: NodeJS.Timeout | undefined;
  #exits: number[] = [];
  /** Set by crashLoopExits exits within the window; cleared by a process that ran for the window. */
  #crashLooping = false;
  /** When the current (or last) process was forked. */
  #forkedAt = 0;
  #exited: Promise<void> = Promise.resolve();
  /** Settles a replacement's start; set from startReplacement() until the first outcome. */
  #settleStart: ((outcome: StartOutcome) => void) | undefined;
  #stopped: Promise<boolean> | undefined;
  #killed = false;
  /** The current process's health: undefined until its first report (the child sends one before `ready`). */
  #up: boolean | undefined;
  /** Failed pings in a row of the current process (HEALTH_DOWN_AFTER_FAILED_PINGS turns it down). */
  #failedPings = 0;
  /** The current process sent `ready` (a replacement may still be waiting for its ping() to pass). */
  #reportedReady = false;
  /** Kills a process that does not report ready in time (a start that is not a replacement); once it is consuming, only warns. */
  #startTimer: NodeJS.Timeout | undefined;
  /** When #startTimer fires (performance.now()). */
  #startDeadline = 0;
  /** Turns the current process down when its health reports stop (policy.healthSilenceMs). */
  #silence: SilenceWatch | undefined;

  constructor(spec: ChildSpec, deps: SlotDeps) {
    this.consumer = spec.consumer;
    this.#spec = spec;
    this.#deps = deps;
  }

  /** True while a process exists for this slot (starting, running or draining). */
  get alive(): boolean {
    return this.#child !== undefined;
  }

  /** Running, and its health up (see HEALTH_DOWN_AFTER_FAILED_PINGS). */
  get ready(): boolean {
    return this.#state === 'running' && this.#up === true;
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
   * Forks the process on probation, for a reload: resolves ready once it reported ready and a
   * ping() of its passed (from then on it is kept running like any other), or with why not when it
   * exited before that (it is not restarted: a module that fails to load would only fail again), was
   * not ready, or not up, within `policy.replacementReadyTimeoutMs` (it is being stopped), or the
   * slot was stopped meanwhile.
   */
  startReplacement(): Promise<StartOutcome> {
    if (this.#state !== 'idle') return Promise.resolve({ ready: false, reason: 'stopped' });
    const timeoutMs = this.#deps.policy.replacementReadyTimeoutMs;
    const outcome = new Promise<StartOutcome>((resolve) => {
      const timer = setTimeout(() => {
        const reason = this.#reportedReady ? 'not_up_in_time' : 'not_ready_in_time';
        this.#settle({ ready: false, reason, pid: this.pid, timeoutMs });
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
    this.#metricsProblems.clear();
    this.#up = undefined;
    this.#failedPings = 0;
    this.#reportedReady = false;
    this.#forkedAt = Date.now();
    let child: ChildProcess;
    try {
      child = (this.#deps.forkChild ?? forkChildMain)();
    } catch (error) {
      // fork() throws for what libuv reports at once (from the restart timer, an uncaught exception
      // that took the supervisor down): a start that failed, restarted with backoff like an exit.
      this.#onForkFailed(undefined, error);
      return;
    }
    this.#child = child;
    this.#silence?.stop();
    // Watching starts at the first health report (heard() in #onHealth), as the reports do.
    this.#silence = new SilenceWatch(this.#deps.policy.healthSilenceMs, () => {
      this.#onSilent(child);
    });
    const id = `${this.consumer}/${child.pid ?? 'unknown'}/${Date.now()}`;
    const processNumber = this.#deps.ledger.admit(id, this.consumer);
    this.#deps.logger.info({ consumer: this.consumer, pid: child.pid }, 'consumer process started');
    this.#exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#onExit(child, code, signal);
        resolve();
      });
      // A fork the OS refused (EAGAIN under a pids limit, EMFILE, ENOENT) has no pid and emits
      // 'error', never 'exit': without this the slot stayed `starting` for good, never restarted.
      child.once('error', (error) => {
        if (child.pid !== undefined || this.#child !== child) return;
        this.#retire(child, id); // frees its number: a failed fork may never emit 'close'
        this.#onForkFailed(child, error);
        resolve();
      });
    });
    // Not on 'exit': messages still in the channel are delivered after it, and a report that came
    // after retire() would be lost (the ledger ignores it; before, it resurrected the child).
    child.once('close', () => {
      this.#retire(child, id);
    });
    child.on('message', (message) => {
      if (!isChildMessage(message)) return;
      if (message.type === 'metrics') this.#onMetrics(child, this.#deps.ledger.report(id, message.snapshot, this.consumer));
      else if (message.type === 'ready') this.#onReady();
      else if (message.type === 'consuming') this.#onConsuming(child);
      else if (message.type === 'health') this.#onHealth(child, message.up);
      else {
        this.#childError = message.message;
        this.#deps.logger.error({ consumer: this.consumer, pid: child.pid, err: message.message }, 'consumer failed to start');
      }
    });
    // A child killed before it read the message makes send() fail with EPIPE: the exit handler restarts it.
    child.on('error', (error) => {
      if (child.pid === undefined) return; // the fork failed: #onForkFailed
      this.#deps.logger.warn({ consumer: this.consumer, pid: child.pid, err: error.message }, 'consumer process channel error');
    });
    // EMFILE / ENFILE: fork() returns before it made the IPC channel, so there is no send().
    if (typeof child.send === 'function') child.send({ type: 'start', spec: this.#spec, process: processNumber });
    // A replacement has its own deadline (startReplacement): it is stopped, not restarted.
    if (this.#settleStart === undefined) this.#armStartTimer(child);
  }

  /**
   * The child's Outbox started: its module loaded, and it is delivering. The ready timeout guards a
   * module that never finishes loading, so it ends here: a process that is consuming is not
   * SIGKILLed for a `ready` that is merely late (mid-delivery, its rows would be handled again
   * after the lease; and a backlog whose synchronous handlers block each new process's loop as
   * long would have every process killed in turn). What `ready` still waits for is one ping()
   * (PING_TIMEOUT_MS at most); past the rest of the timeout, and at least that ping's bound and a
   * margin, it is warned of once, and the slot stays not ready until the report comes. Only one
   * that has not reported ready after CONSUMING_WEDGED_MS is taken for wedged and killed. A
   * replacement keeps its own deadline, which stops it with a drain.
   */
  #onConsuming(child: ChildProcess): void {
    if (this.#child !== child || this.#state !== 'starting' || this.#settleStart !== undefined) return;
    const remainingMs = Math.ceil(this.#startDeadline - performance.now());
    const warnAfterMs = Math.max(remainingMs, PING_TIMEOUT_MS + CONSUMING_READY_MARGIN_MS);
    const wedgedAfterMs = Math.max(
      CONSUMING_WEDGED_MS,
      CONSUMING_WEDGED_TIMEOUTS * this.#deps.policy.replacementReadyTimeoutMs,
      warnAfterMs,
    );
    clearTimeout(this.#startTimer);
    this.#startTimer = setTimeout(() => {
      if (this.#child !== child || this.#state !== 'starting') return;
      this.#deps.logger.warn(
        { consumer: this.consumer, pid: child.pid, waitedMs: Date.now() - this.#forkedAt },
        'consumer process is consuming but has not reported ready in time (its event loop blocked by synchronous handlers?); not ready until it does, not killed',
      );
      // Re-armed, not a second timer: #onReady and the exit clear this one.
      this.#armStartTimer(child, wedgedAfterMs - warnAfterMs, 'wedged');
    }, warnAfterMs);
  }

  #armStartTimer(
    child: ChildProcess,
    timeoutMs = this.#deps.policy.replacementReadyTimeoutMs,
    why: 'not loaded' | 'wedged' = 'not loaded',
  ): void {
    clearTimeout(this.#startTimer);
    this.#startDeadline = performance.now() + timeoutMs;
    this.#startTimer = setTimeout(() => {
      if (this.#child !== child || this.#state !== 'starting') return;
      this.#deps.logger.error(
        { consumer: this.consumer, pid: child.pid, timeoutMs, waitedMs: Date.now() - this.#forkedAt },
        why === 'wedged'
          ? 'consumer process has been consuming for 10 minutes or more without reporting ready once (a handler in an endless loop, a deadlock?); killing it to start it again'
          : 'consumer process did not report ready in time (a handler module that never finishes loading?); killing it to start it again',
      );
      // SIGKILL: a process stuck before `ready` may not run its SIGTERM handler either. Its exit
      // restarts it with backoff; any row it had leased comes back after the lease.
      child.kill('SIGKILL');
    }, timeoutMs);
  }

  /**
   * Folds an exited process's metrics into the runner's totals. In a listener of the child's
   * events: a throw there would take the whole runner down, so what merging cannot take (nothing the
   * ledger's checks let through, as far as we know) costs that process's counts and one error line.
   */
  #retire(child: ChildProcess, id: string): void {
    try {
      this.#deps.ledger.retire(id);
    } catch (error) {
      this.#deps.logger.error(
        { consumer: this.consumer, pid: child.pid, err: errorMessage(error) },
        "could not add an exited consumer process's metrics to the runner's totals; its counts are left out",
      );
    }
  }

  /**
   * Logs what the ledger left out of a metrics report, once per process and problem: the report
   * comes every second, and a handler that sends its own `metrics` message would say it each time.
   */
  #onMetrics(child: ChildProcess, problems: readonly string[]): void {
    for (const problem of problems) {
      if (this.#metricsProblems.has(problem) || this.#metricsProblems.size >= MAX_LOGGED_METRICS_PROBLEMS) continue;
      this.#metricsProblems.add(problem);
      this.#deps.logger.warn(
        { consumer: this.consumer, pid: child.pid, problem },
        'consumer process reported metrics the runner cannot merge; left out of /metrics',
      );
    }
  }

  /** The current process sent no health report for policy.healthSilenceMs of observed time. */
  #onSilent(child: ChildProcess): void {
    if (this.#child !== child || (this.#state !== 'running' && this.#state !== 'starting') || this.#up !== true) return;
    this.#up = false;
    this.#deps.logger.warn(
      { consumer: this.consumer, pid: child.pid, silenceMs: this.#deps.policy.healthSilenceMs },
      'consumer process sent no health report in time (its event loop blocked, or the process frozen); not ready until it reports again',
    );
  }

  /** The OS did not give a process (fork threw, or its child emitted a spawn error): as an exit. */
  #onForkFailed(child: ChildProcess | undefined, error: unknown): void {
    const message = errorMessage(error);
    this.#deps.logger.error({ consumer: this.consumer, err: message }, 'could not fork the consumer process');
    this.#childError = message;
    this.#onExit(child, null, null);
  }

  /**
   * One ping() result of the child. Up at the first success; down at the first report of a process
   * that never passed one, else after HEALTH_DOWN_AFTER_FAILED_PINGS failures in a row. Logged when
   * it changes; a process that is not up does not count as ready.
   */
  #onHealth(child: ChildProcess, passed: boolean): void {
    if (this.#child !== child) return;
    this.#silence?.heard();
    const was = this.#up;
    this.#failedPings = passed ? 0 : this.#failedPings + 1;
    if (passed) this.#up = true;
    else if (was !== true || this.#failedPings >= HEALTH_DOWN_AFTER_FAILED_PINGS) this.#up = false;
    if (this.#up === was) return;
    if (this.#up) {
      if (was === false) this.#deps.logger.info({ consumer: this.consumer, pid: child.pid }, 'consumer process is up again');
      this.#promoteReplacement();
    } else {
      this.#deps.logger.warn(
        { consumer: this.consumer, pid: child.pid, failedPings: this.#failedPings },
        "consumer process is not up: its ping() failed (the database, its subscription's loop, or a relay's sink); not ready until it passes",
      );
    }
  }

  #onReady(): void {
    if (this.#state !== 'starting') return;
    clearTimeout(this.#startTimer);
    this.#reportedReady = true;
    if (this.#settleStart !== undefined && this.#up !== true) {
      this.#deps.logger.warn(
        { consumer: this.consumer, pid: this.pid, timeoutMs: this.#deps.policy.replacementReadyTimeoutMs },
        'new consumer process reported ready but its ping() fails; it replaces nothing until the ping passes',
      );
      return;
    }
    this.#state = 'running';
    this.#settle({ ready: true });
  }

  /** A replacement that reported ready while not up is started once its ping() passes. */
  #promoteReplacement(): void {
    if (this.#state !== 'starting' || !this.#reportedReady || this.#settleStart === undefined) return;
    this.#state = 'running';
    this.#settle({ ready: true });
  }

  /** `child` is undefined when fork() threw (#onForkFailed). */
  #onExit(child: ChildProcess | undefined, code: number | null, signal: NodeJS.Signals | null): void {
    if (child?.pid !== undefined)
      this.#deps.logger.info({ consumer: this.consumer, pid: child.pid, code, signal }, 'consumer process exited');
    if (this.#child === child) {
      this.#child = undefined;
      clearTimeout(this.#startTimer);
      this.#silence?.stop();
    }
    if (this.#state === 'stopping' || this.#state === 'stopped') {
      this.#state = 'stopped';
      return;
    }
    if (this.#state === 'starting' && this.#settleStart !== undefined) {
      this.#state = 'stopped';
      this.#settle({ ready: false, reason: 'exited', pid: child?.pid, code, signal, error: this.#childError });
      return;
    }
    const now = Date.now();
    const { policy } = this.#deps;
    this.#exits = [...this.#exits.filter((at) => now - at < policy.crashLoopWindowMs), now];
    // A crash loop ends only when a process ran for the window: with the maximum delay (60 s)
    // longer than the window (30 s), the loop's next exit otherwise counted as the first and was
    // restarted after 0.5 s again.
    this.#crashLooping =
      this.#exits.length >= policy.crashLoopExits || (this.#crashLooping && now - this.#forkedAt < policy.crashLoopWindowMs);
    const crashLoop = this.#crashLooping;
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
    clearTimeout(this.#startTimer);
    this.#silence?.stop();
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
