import type { DashboardOutbox } from '../dashboard/dashboard-context.js';
import type { ServedDashboard } from '../dashboard/dashboard-server.js';
import type { DashboardProcesses } from '../dashboard/processes.js';
import { DEFAULT_LEASE_TTL_MS } from '../subscriber/subscription-options.js';
import type { Logger } from '../util/logger.js';
import type { DashboardConfig } from './config/runner-config.js';
import type { ConsumerPlan, Supervisor } from './supervisor.js';

/** What the runner knows of its consumers, for the dashboard's processes page. */
export interface RunnerState {
  readonly supervisor: Supervisor;
  /** The plans in effect (the last start or reload). */
  plans(): ReadonlyMap<string, ConsumerPlan>;
  /** Restarts after unexpected exits, by consumer. */
  restarts(): ReadonlyMap<string, number>;
  ready(): Promise<boolean>;
}

/** The processes page's data, read from the supervisor at request time (like /metrics' process gauge). */
export async function processesOf(state: RunnerState): Promise<DashboardProcesses> {
  const plans = state.plans();
  const consumers = [...state.supervisor.processCounts()].map(([name, counts]) => ({
    name,
    queues: plans.get(name)?.spec.queues ?? [],
    wanted: counts.wanted,
    alive: counts.alive,
    ready: counts.ready,
    restarts: state.restarts().get(name) ?? 0,
    pids: state.supervisor.pids(name),
  }));
  return { ready: await state.ready(), consumers };
}

/**
 * The lease TTL the queue page's peek() judges `queue`'s leases by: its consumers' `leaseTtlMs`
 * (subscribe()'s default for one that sets none). When several consumers read the queue, the
 * longest: a lease is called expired (the row shown ready) only once every consumer would let it
 * go. Undefined for a queue no consumer of this config reads: the dashboard's own default then.
 */
export function leaseTtlMsOf(plans: ReadonlyMap<string, ConsumerPlan>, queue: string): number | undefined {
  const ttls = [...plans.values()]
    .filter((plan) => plan.spec.queues.includes(queue))
    .map((plan) => {
      // Validated by subscribe()'s own resolver when the config was loaded.
      const given = plan.spec.subscribe.leaseTtlMs;
      return typeof given === 'number' ? given : DEFAULT_LEASE_TTL_MS;
    });
  return ttls.length === 0 ? undefined : Math.max(...ttls);
}

/**
 * Serves the dashboard on the runner's own Outbox, its processes page fed by the supervisor, its
 * peek() told each consumer's lease TTL (read at request time: a reload may change them). The
 * dashboard's code is imported here, on use: a runner without `dashboard:` never loads it.
 */
export async function serveRunnerDashboard(
  outbox: DashboardOutbox,
  config: DashboardConfig,
  state: RunnerState,
  logger: Logger,
): Promise<ServedDashboard> {
  const { startDashboard } = await import('../dashboard/dashboard-server.js');
  return await startDashboard(outbox, {
    ...config,
    logger,
    processes: () => processesOf(state),
    leaseTtlMsOf: (queue) => leaseTtlMsOf(state.plans(), queue),
  });
}
