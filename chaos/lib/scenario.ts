/**
 * What a scenario is (one file in chaos/scenarios/) and what it gets to work with. A scenario
 * drives load and faults; the harness (scenario-run.ts) owns the server, the processes, the time
 * bounds, the cleanup and the accounting.
 */
import type { PgBouncer, PgBouncerOptions } from '../../test/support/pgbouncer.js';
import type { TcpProxy } from '../../test/support/tcp-proxy.js';
import type { WorkerSpec } from '../worker/protocol.js';
import type { Accounting } from './accounting.js';
import type { BrokerKind, ChaosBroker } from './broker.js';
import type { ChaosServer } from './chaos-server.js';
import type { FaultLog } from './faults.js';
import type { Load } from './load.js';
import type { Product } from './product.js';
import type { RunnerProcess, RunnerShape } from './runner-process.js';
import type { WorkerProcess } from './worker-process.js';

/** Links per chain: the root and two follow-ups, each published by the previous link's handler. */
export const CHAIN_LENGTH = 3;

export interface Scenario {
  readonly id: string;
  /** What is injected, in one line (the report's description). */
  readonly title: string;
  /** Part of `--quick` (and of the test inside `npm test`). */
  readonly quick: boolean;
  /** The lease the scenario's consumers use: a duplicate is explained only near a fault (accounting.ts). */
  readonly leaseTtlMs: number;
  /**
   * The fault kinds (FaultLog) it injects: a scenario that recorded none of them before its final
   * drain tested nothing, and fails. Empty for a scenario with no fault by design (slow-handlers).
   */
  readonly injects: readonly string[];
  /** The whole scenario's bound: past it, what it was doing is reported as hung and everything is killed. */
  timeoutMs(quick: boolean): number;
  run(ctx: ScenarioContext): Promise<void>;
}

/** A worker's options beyond the harness's defaults (see scenario-run.ts for those). */
export type WorkerOptions = Partial<Omit<WorkerSpec, 'productRoot' | 'subscribe'>> & {
  readonly subscribe?: WorkerSpec['subscribe'];
};

export interface ScenarioContext {
  readonly quick: boolean;
  readonly product: Product;
  readonly server: ChaosServer;
  /** The scenario's database, directly (not through a proxy). */
  readonly databaseUrl: string;
  readonly load: Load;
  readonly faults: FaultLog;
  /**
   * Aborted when the scenario is over: its bound ran out, or it ended. From then on every method of
   * the context and of what it handed out throws ScenarioOver (scenario-guard.ts), and findings and
   * notes are dropped.
   */
  readonly signal: AbortSignal;
  /** What the scenario is doing now: shown on the progress line, and named if it hangs. */
  step(text: string): void;
  /** A failure the accounting cannot see (a hang, a stray process, a budget overrun). */
  finding(text: string): void;
  /** Something worth reading that is not a failure. */
  note(text: string): void;
  /** A harness pause between steps (ends early when the scenario is aborted). */
  pause(ms: number): Promise<void>;
  startRunner(shape: RunnerShape): Promise<RunnerProcess>;
  /** Writes the runner's config file again (for a SIGHUP). */
  rewriteRunnerConfig(runner: RunnerProcess, shape: RunnerShape): void;
  startWorker(options?: WorkerOptions): Promise<WorkerProcess>;
  /** A TCP proxy in front of the database server, or of `targetPort` (a broker's). */
  startProxy(targetPort?: number): Promise<TcpProxy>;
  /**
   * A real PgBouncer (transaction mode) in front of the database server; `bouncer.urlFor(databaseUrl)`
   * reaches the scenario's database through it. Closed by the harness after the scenario.
   */
  startPgBouncer(options?: Omit<PgBouncerOptions, 'serverUrl'>): Promise<PgBouncer>;
  /**
   * A broker for relay workers (`startWorker({ relay: broker.relay })`), one per scenario. A
   * scenario that starts one is accounted for at the broker (relay-accounting.ts): after the
   * scenario the harness starts it again if it is down, reads every message back and stops it.
   */
  startBroker(kind: BrokerKind): Promise<ChaosBroker>;
  /** SIGTERM to a runner and the wait for its exit, timed against its budget; a hang is killed. */
  stopRunner(runner: RunnerProcess, what: string): Promise<void>;
  /** stop() in a worker, timed against gracefulTimeoutMs + STOP_SLACK_MS; a hang is killed. */
  stopWorker(worker: WorkerProcess, what: string): Promise<void>;
  /** Records how long claiming took to resume after a fault was lifted (null: not within the bound). */
  recordRecovery(what: string, ms: number | null, boundMs: number): void;
  /** Rows in the outbox now. */
  outboxRows(): Promise<number>;
  /** The highest row id in the outbox now (0 when empty). */
  lastOutboxId(): Promise<string>;
  /**
   * How long after `since` no row with an id up to `upToId` was left in the outbox (for a relay:
   * every one confirmed by the broker), waiting up to `ms`; null when some still were.
   */
  backlogGone(upToId: string, since: number, ms: number): Promise<number | null>;
  /**
   * The final drain (final-drain.ts): waits until the outbox table is empty; false when `ms` ran
   * out. Faults from its start on (the final stops) are not counted as the scenario's injections.
   */
  drain(ms: number): Promise<boolean>;
  /**
   * How long after `since` every worker completed a claim (the `fetched` event: a claim statement
   * that returned, rows or none), waiting up to `ms`; null when one had not.
   */
  claimResumed(workers: readonly WorkerProcess[], since: number, ms: number): Promise<number | null>;
  /** The longest time between two handler starts in [from, to] (and the window's edges), ms. */
  longestGap(from: number, to: number): Promise<number>;
}

export interface TimedStop {
  readonly what: string;
  /** null: it had not returned when the harness gave up and killed it. */
  readonly ms: number | null;
  readonly budgetMs: number;
}

export interface Recovery {
  readonly what: string;
  readonly ms: number | null;
  readonly boundMs: number;
}

export interface ScenarioResult {
  readonly id: string;
  readonly title: string;
  readonly pass: boolean;
  readonly seconds: number;
  readonly accounting: Accounting | null;
  readonly stops: readonly TimedStop[];
  readonly recoveries: readonly Recovery[];
  readonly findings: readonly string[];
  readonly notes: readonly string[];
  readonly publishFailures: number;
  /** Faults as offsets from the scenario's start, seconds. */
  readonly faults: readonly { kind: string; detail: string; at: number; seconds: number; explains: boolean }[];
  readonly logDir: string;
  /** A relay scenario: the broker whose read-back the accounting counts (`redis-server`). */
  readonly accountedAt?: string;
}
