import type { Registry } from 'prom-client';

import type { ServedDashboard } from '../dashboard/dashboard-server.js';
import { InvalidOptionError, PortInUseError } from '../errors.js';
import { Outbox } from '../outbox.js';
import { type QueueStateCollector, queueStateCollector } from '../prometheus/queue-state-collector.js';
import { type ServedMetrics, serveMetrics } from '../prometheus/serve-metrics.js';
import { beforeDeadline } from '../util/deadline.js';
import type { Logger } from '../util/logger.js';
import { applicationName, withApplicationName } from './application-name.js';
import type { DashboardConfig } from './config/runner-config.js';
import { supervisorPool } from './connection-budget.js';
import { KILL_MARGIN_MS, KILL_WAIT_MS, type RestartPolicy } from './consumer-slot.js';
import { DlqRetention } from './dlq-retention.js';
import { MetricsLedger } from './metrics/metrics-ledger.js';
import { ParentMetrics } from './parent-metrics.js';
import { type RunnerState, serveRunnerDashboard } from './runner-dashboard.js';
import { type ConsumerPlan, type ReloadOutcome, Supervisor } from './supervisor.js';

/**
 * Restart backoff: 0.5 s doubling to 60 s; 5 exits in 30 s is a crash loop (backed off to 60 s).
 * A process has 60 s to report ready (a reload's replacement is then given up, any other start
 * killed and started again): it imports the handler module and pings the database, which a cold
 * start of a large app under load can take tens of seconds to do. A running process that sends no
 * health report for 30 s is not ready until it does.
 */
export const DEFAULT_RESTART_POLICY: RestartPolicy = {
  restartInitialDelayMs: 500,
  restartMaxDelayMs: 60_000,
  crashLoopExits: 5,
  crashLoopWindowMs: 30_000,
  replacementReadyTimeoutMs: 60_000,
  // HEALTH_DOWN_AFTER_FAILED_PINGS reports' worth: one every HEALTH_INTERVAL_MS (5 s) after a ping of at most 5 s.
  healthSilenceMs: 30_000,
};

/** How long the parent's own Outbox (readiness, queue state) may take to close its pool. */
const OWN_OUTBOX_STOP_MS = 5_000;

/**
 * The longest `txoutbox run` takes from SIGTERM to its exit, every bound of stop() added up: each
 * child drains within gracefulTimeoutMs, is SIGKILLed KILL_MARGIN_MS later and waited for at most
 * KILL_WAIT_MS more (the DLQ retention's own 5 s bound runs beside them), then the parent's Outbox
 * gets OWN_OUTBOX_STOP_MS. A Kubernetes terminationGracePeriodSeconds shorter than this may SIGKILL
 * a draining consumer, whose rows then wait for their lease to expire (architecture/deployment.md).
 */
export function longestStopMs(gracefulTimeoutMs: number): number {
  return gracefulTimeoutMs + KILL_MARGIN_MS + KILL_WAIT_MS + OWN_OUTBOX_STOP_MS;
}

/** The library options the runner sets from config keys of another name. */
const CONFIG_KEYS: Readonly<Record<string, string>> = {
  'serveMetrics.host': 'metrics.prometheus.host',
  'serveMetrics.port': 'metrics.prometheus.port',
};

/**
 * A port in use or an address the machine does not have, named by the config key that set it
 * (`metrics.prometheus.port`), not by the library option the runner passed it to
 * (`serveMetrics.port`, the dashboard's `--port`).
 */
function inConfigTerms(error: unknown, portKey: string): unknown {
  if (error instanceof PortInUseError) {
    return new PortInUseError({ host: error.host, port: error.port, option: portKey, cause: error.cause });
  }
  const key = error instanceof InvalidOptionError ? CONFIG_KEYS[error.option] : undefined;
  if (error instanceof InvalidOptionError && key !== undefined) {
    const fix = error.fix === undefined ? {} : { fix: error.fix };
    return new InvalidOptionError({ option: key, value: error.value, expected: error.expected, ...fix, cause: error.cause });
  }
  return error;
}

export interface RunnerMetricsOptions {
  readonly enabled: boolean;
  readonly host: string;
  readonly port: number;
  readonly prefix: string;
  /** One runner per table reads the queue state (queueStateCollector's leaderElection). @default false (txoutbox.yaml's default is true: config/queue-state-election.ts) */
  readonly queueStateLeader?: boolean;
}

export interface RunnerOptions {
  readonly plans: ReadonlyMap<string, ConsumerPlan>;
  /** The parent's own connections, for /readyz and the queue-state gauges (children open their own). */
  readonly databaseUrl: string;
  readonly table: string;
  readonly dlqTable: string | false;
  /** The config's database.queryTimeoutMs: bounds this process's own statements too (DLQ retention, queue state, the dashboard's actions). */
  readonly queryTimeoutMs?: number;
  /** Dead letters older than this are deleted by this process, hourly (dlq-retention.ts); absent: kept. */
  readonly dlqRetentionMs?: number | undefined;
  readonly metrics: RunnerMetricsOptions;
  readonly logger: Logger;
  readonly policy?: RestartPolicy;
  /** The web dashboard, served on the runner's own Outbox (architecture/dashboard.md); absent: none. */
  readonly dashboard?: DashboardConfig | undefined;
  /** The Outbox connection options of the config (transactionPooling, …): its own Outbox needs them too (validate-connection.ts). */
  readonly connection?: Readonly<Record<string, unknown>>;
}

/**
 * `txoutbox run` without the process plumbing (signals, config files): the supervisor, the metrics
 * ledger and the one /metrics endpoint that aggregates every child. The endpoint binds before any
 * child is forked, so a port in use fails the start with nothing left running.
 */
export class Runner {
  readonly supervisor: Supervisor;
  readonly #metrics: ParentMetrics;
  readonly #outbox: Outbox;
  readonly #logger: Logger;
  readonly #retention: DlqRetention | undefined;
  readonly #queueState: QueueStateCollector;
  #server: ServedMetrics | undefined;
  #dashboard: ServedDashboard | undefined;
  /** The plans in effect and restarts by consumer: what the dashboard's processes page shows. */
  #plans: ReadonlyMap<string, ConsumerPlan> = new Map();
  readonly #restarts = new Map<string, number>();
  #stopping: Promise<boolean> | undefined;

  private constructor(options: RunnerOptions) {
    this.#logger = options.logger;
    const ledger = new MetricsLedger();
    let restarted: (consumer: string) => void = () => undefined;
    this.supervisor = new Supervisor({
      policy: options.policy ?? DEFAULT_RESTART_POLICY,
      ledger,
      logger: options.logger,
      onRestart: (consumer) => {
        restarted(consumer);
      },
    });
    this.#metrics = new ParentMetrics(options.metrics.prefix, () => this.supervisor, ledger);
    restarted = (consumer) => {
      this.#metrics.restarted(consumer);
      this.#restarts.set(consumer, (this.#restarts.get(consumer) ?? 0) + 1);
    };
    // No subscriptions: this Outbox only answers readiness probes and reads the queue state at
    // scrape time (cached 1 s), so /metrics shows depth and oldest age next to the children's series.
    this.#outbox = new Outbox({
      ...options.connection,
      connectionString: withApplicationName(options.databaseUrl, applicationName(undefined)),
      // The dashboard's pages read status and peek side by side: two more connections.
      poolSize: supervisorPool(options.dashboard !== undefined),
      table: options.table,
      dlqTable: options.dlqTable,
      ...(options.queryTimeoutMs === undefined ? {} : { queryTimeoutMs: options.queryTimeoutMs }),
      logger: options.logger,
    });
    // With queueStateLeader, of the runners of one table only the lock holder reads (a standby
    // exports queue_state_leader 0): the database serves one read per scrape, not one per host.
    this.#queueState = queueStateCollector(this.#outbox, {
      registry: this.#metrics.own,
      prefix: options.metrics.prefix,
      leaderElection: options.metrics.enabled && options.metrics.queueStateLeader === true,
    });
    this.#retention =
      options.dlqRetentionMs === undefined
        ? undefined
        : new DlqRetention({
            // Throws InvalidOptionError naming dlqTable when there is no DLQ: nothing starts (so
            // dlqTable is set below).
            dlq: this.#outbox.dlq,
            table: this.#outbox.dlqTable ?? '',
            maxAgeMs: options.dlqRetentionMs,
            registry: this.#metrics.own,
            prefix: options.metrics.prefix,
            logger: options.logger,
          });
  }

  static async start(options: RunnerOptions): Promise<Runner> {
    const runner = new Runner(options);
    if (options.metrics.enabled) {
      try {
        runner.#server = await serveMetrics({
          registry: () => runner.#metrics.registry(),
          host: options.metrics.host,
          port: options.metrics.port,
          ready: () => runner.ready(),
        });
      } catch (error) {
        await runner.#queueState.close();
        await runner.#outbox.stop();
        throw inConfigTerms(error, 'metrics.prometheus.port');
      }
    }
    if (options.dashboard !== undefined) {
      try {
        runner.#dashboard = await serveRunnerDashboard(
          runner.#outbox,
          options.dashboard,
          runner.#dashboardState(),
          options.logger,
        );
      } catch (error) {
        await runner.#server?.close();
        await runner.#queueState.close();
        await runner.#outbox.stop();
        throw inConfigTerms(error, 'dashboard.port');
      }
    }
    runner.#plans = options.plans;
    runner.supervisor.start(options.plans);
    runner.#retention?.start();
    options.logger.info(
      {
        consumers: Object.fromEntries([...options.plans].map(([name, plan]) => [name, plan.processes])),
        metrics: runner.metricsUrl ?? 'disabled',
        dashboard: runner.dashboardUrl ?? 'disabled',
      },
      'runner started',
    );
    return runner;
  }

  /** `http://host:port/metrics`, or undefined when metrics are disabled. */
  get metricsUrl(): string | undefined {
    return this.#server === undefined ? undefined : `${this.#server.url}/metrics`;
  }

  /** The dashboard's `http://host:port/`, or undefined when it is not enabled. */
  get dashboardUrl(): string | undefined {
    return this.#dashboard?.url;
  }

  #dashboardState(): RunnerState {
    return {
      supervisor: this.supervisor,
      plans: () => this.#plans,
      restarts: () => this.#restarts,
      ready: () => this.ready(),
    };
  }

  /** What /metrics serves: the supervisor's series and every child's, merged (a fresh registry). */
  registry(): Registry {
    return this.#metrics.registry();
  }

  /** Every consumer has a process that reported ready, and the database answers. */
  async ready(): Promise<boolean> {
    if (this.#stopping !== undefined) return false;
    for (const counts of this.supervisor.processCounts().values()) if (counts.wanted > 0 && counts.ready === 0) return false;
    return await this.#outbox.ping();
  }

  /**
   * Applies a new set of consumers (SIGHUP). What this process set up at start (restart-only-changes.ts)
   * stays as it is. A consumer whose new processes cannot start keeps its old ones (named in `failed`).
   */
  async reload(plans: ReadonlyMap<string, ConsumerPlan>): Promise<ReloadOutcome> {
    if (this.#stopping !== undefined) return { interrupted: true, failed: [] };
    const outcome = await this.supervisor.reload(plans);
    // A consumer whose rollout failed keeps running its previous plan.
    const previous = this.#plans;
    this.#plans = new Map(
      [...plans].map(([name, plan]) => [name, outcome.failed.includes(name) ? (previous.get(name) ?? plan) : plan]),
    );
    return outcome;
  }

  /**
   * Drains every child within its graceful timeout (each is SIGKILLed KILL_MARGIN_MS after it),
   * whatever a reload was doing, then closes the endpoint. Resolves true when every child drained
   * in time. Idempotent.
   */
  stop(): Promise<boolean> {
    this.#stopping ??= (async () => {
      // The queue-state lock goes first: a standby runner takes the reads over while this one drains.
      const [drained] = await Promise.all([this.supervisor.stop(), this.#retention?.stop(), this.#queueState.close()]);
      await Promise.all([this.#server?.close(), this.#dashboard?.close()]);
      await beforeDeadline(this.#outbox.stop(), OWN_OUTBOX_STOP_MS, () => {
        this.#logger.warn({ deadlineMs: OWN_OUTBOX_STOP_MS }, "the runner's own database pool did not close in time");
      });
      this.#logger.info({ drained }, 'runner stopped');
      return drained;
    })();
    return this.#stopping;
  }

  /** Stops at once (a second stop signal): every child is SIGKILLed; resolves false. */
  async kill(): Promise<boolean> {
    const stopped = this.stop();
    await this.supervisor.kill();
    return await stopped;
  }
}
