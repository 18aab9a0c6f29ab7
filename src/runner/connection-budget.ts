import { RELAY_DEFAULTS } from '../relay/relay-options.js';
import { poolDemand } from '../subscriber/pool-demand.js';
import { type ResolvedSubscribeOptions, resolveSubscribeOptions } from '../subscriber/subscription-options.js';
import { subscribeOptionsFromSpec } from './child/subscribe-options-from-spec.js';
import { electsQueueStateLeader } from './config/queue-state-election.js';
import type { ConsumerConfig, RelayConfig, RunnerConfig } from './config/runner-config.js';

/**
 * The connections of a `txoutbox run` config, as a formula over what each process serves
 * (architecture/runner.md, "Connection budget"). Every number is a maximum the code enforces, not
 * an estimate: a pg.Pool never opens more than its max, and the LISTEN and NOTIFY connections are
 * one each per Outbox.
 *
 *   child     = pool + LISTEN (1 when listen) + NOTIFY (1 when notify is 'after-commit' and it is a
 *               consumer: its handlers may ctx.publish; a relay never publishes)
 *     pool    = database.poolSize when set, else poolDemand(the consumer's subscription)
 *   supervisor = its own pool: 2, or 4 with the dashboard (runner.ts); no LISTEN, no NOTIFY
 *               + 1 session holding or trying the queue-state lock (queue-state-election.ts)
 *   host      = Σ over consumers and relays of processes × child + supervisor
 */
export interface ProcessBudget {
  readonly pool: number;
  readonly listen: 0 | 1;
  readonly notify: 0 | 1;
  readonly total: number;
}

export interface ServedBudget {
  readonly name: string;
  readonly kind: 'consumer' | 'relay';
  readonly processes: number;
  readonly perProcess: ProcessBudget;
}

export interface ConfigBudget {
  /** In file order: consumers, then relays. */
  readonly served: readonly ServedBudget[];
  /** pool + leaderSession. */
  readonly supervisor: number;
  /** 1 when the supervisor keeps a session for the queue-state leader's advisory lock (queue-state-leader.ts). */
  readonly leaderSession: 0 | 1;
  /** Σ processes × perProcess.total + supervisor. */
  readonly perHost: number;
}

/** The supervisor's own pool (runner.ts): readiness and queue state, plus two for the dashboard's pages. */
export function supervisorPool(hasDashboard: boolean): number {
  return hasDashboard ? 4 : 2;
}

/** A consumer's or relay's subscription options as its child resolves them (relays over RELAY_DEFAULTS). */
export function servedOptions(
  served: Pick<ConsumerConfig | RelayConfig, 'queues' | 'subscribe'>,
  kind: 'consumer' | 'relay',
  hasDlq: boolean,
): ResolvedSubscribeOptions {
  const options = subscribeOptionsFromSpec(served.subscribe);
  const noHandler = (): Promise<void> => Promise.resolve();
  return resolveSubscribeOptions(
    served.queues,
    noHandler,
    kind === 'relay' ? { ...RELAY_DEFAULTS, ...options } : options,
    hasDlq,
  );
}

/** Whether the Outbox of every process opens a LISTEN connection, as its resolver decides (transaction-pooling.ts). */
function listens(database: RunnerConfig['database']): boolean {
  return database.listen ?? (!database.transactionPooling || database.listenUrl !== undefined);
}

export function processBudget(
  database: RunnerConfig['database'],
  options: ResolvedSubscribeOptions,
  kind: 'consumer' | 'relay',
): ProcessBudget {
  const pool = database.poolSize ?? poolDemand(options);
  const listen = listens(database) ? 1 : 0;
  const notify = kind === 'consumer' && (database.notify ?? 'after-commit') === 'after-commit' ? 1 : 0;
  return { pool, listen, notify, total: pool + listen + notify };
}

export function configBudget(config: RunnerConfig): ConfigBudget {
  const hasDlq = config.dlqTable !== false;
  const served: ServedBudget[] = [
    ...[...config.consumers.values()].map((consumer) => ({ entry: consumer, kind: 'consumer' as const })),
    ...[...config.relays.values()].map((relay) => ({ entry: relay, kind: 'relay' as const })),
  ].map(({ entry, kind }) => ({
    name: entry.name,
    kind,
    processes: entry.processes,
    perProcess: processBudget(config.database, servedOptions(entry, kind, hasDlq), kind),
  }));
  const leaderSession = electsQueueStateLeader(config) ? 1 : 0;
  const supervisor = supervisorPool(config.dashboard !== undefined) + leaderSession;
  const perHost = served.reduce((sum, entry) => sum + entry.processes * entry.perProcess.total, supervisor);
  return { served, supervisor, leaderSession, perHost };
}
