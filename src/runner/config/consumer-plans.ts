import { applicationName, withApplicationName } from '../application-name.js';
import { configBudget } from '../connection-budget.js';
import type { ChildTracingSpec, ConsumerChildSpec, RelayChildSpec } from '../protocol.js';
import type { ConsumerPlan } from '../supervisor.js';
import type { RunnerConfig } from './runner-config.js';
import { outboxConnectionOptions } from './validate-connection.js';

/**
 * How often a child reports its metrics registry to the supervisor. Under the 1 s the protocol
 * allows: it bounds what a SIGKILLed child's counters can lose.
 */
export const FLUSH_INTERVAL_MS = 500;

/** A child's tracing settings: `service.name` defaults to the consumer's or relay's name. */
function tracingOf(config: RunnerConfig, name: string): { tracing?: ChildTracingSpec } {
  const { tracing } = config;
  if (tracing === undefined) return {};
  return { tracing: { ...tracing, serviceName: tracing.serviceName ?? name } };
}

/**
 * The supervisor's plan for each consumer and relay of a validated config: its child spec and
 * process count. Relays are supervised exactly as consumers are; their names never collide (the
 * config refuses a relay named like a consumer).
 */
export function consumerPlans(config: RunnerConfig): Map<string, ConsumerPlan> {
  const plans = new Map<string, ConsumerPlan>();
  const budget = new Map(configBudget(config).served.map((served) => [served.name, served.perProcess]));
  // Each process's pool: the file's poolSize, else sized for what it serves (connection-budget.ts).
  const own = (name: string) => ({
    databaseUrl: withApplicationName(config.database.url, applicationName(name)),
    poolSize: budget.get(name)?.pool ?? 1,
    connection: outboxConnectionOptions(config.database, applicationName(name)),
  });
  const shared = {
    queryTimeoutMs: config.database.queryTimeoutMs,
    table: config.table,
    dlqTable: config.dlqTable,
    gracefulTimeoutMs: config.gracefulTimeoutMs,
    metricsPrefix: config.metrics.prometheus.prefix,
    flushIntervalMs: FLUSH_INTERVAL_MS,
    statsd: config.metrics.statsd ?? null,
    ...(config.schemas === undefined ? {} : { schemas: config.schemas }),
  };
  for (const consumer of config.consumers.values()) {
    const spec: ConsumerChildSpec = {
      consumer: consumer.name,
      ...shared,
      ...own(consumer.name),
      ...tracingOf(config, consumer.name),
      handlerPath: consumer.handlerPath,
      handlerExport: consumer.handlerExport,
      queues: consumer.queues,
      subscribe: consumer.subscribe,
    };
    plans.set(consumer.name, { spec, processes: consumer.processes });
  }
  for (const relay of config.relays.values()) {
    const spec: RelayChildSpec = {
      consumer: relay.name,
      ...shared,
      ...own(relay.name),
      ...tracingOf(config, relay.name),
      sink: relay.sink,
      queues: relay.queues,
      subscribe: relay.subscribe,
    };
    plans.set(relay.name, { spec, processes: relay.processes });
  }
  return plans;
}
