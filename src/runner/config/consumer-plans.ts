import type { ChildSpec } from '../protocol.js';
import type { ConsumerPlan } from '../supervisor.js';
import type { RunnerConfig } from './runner-config.js';

/**
 * How often a child reports its metrics registry to the supervisor. Under the 1 s the protocol
 * allows: it bounds what a SIGKILLed child's counters can lose.
 */
export const FLUSH_INTERVAL_MS = 500;

/** The supervisor's plan for each consumer of a validated config: its child spec and process count. */
export function consumerPlans(config: RunnerConfig): Map<string, ConsumerPlan> {
  const plans = new Map<string, ConsumerPlan>();
  for (const consumer of config.consumers.values()) {
    const spec: ChildSpec = {
      consumer: consumer.name,
      databaseUrl: config.database.url,
      poolSize: config.database.poolSize,
      queryTimeoutMs: config.database.queryTimeoutMs,
      table: config.table,
      dlqTable: config.dlqTable,
      gracefulTimeoutMs: config.gracefulTimeoutMs,
      handlerPath: consumer.handlerPath,
      handlerExport: consumer.handlerExport,
      queues: consumer.queues,
      subscribe: consumer.subscribe,
      metricsPrefix: config.metrics.prometheus.prefix,
      flushIntervalMs: FLUSH_INTERVAL_MS,
      statsd: config.metrics.statsd ?? null,
    };
    plans.set(consumer.name, { spec, processes: consumer.processes });
  }
  return plans;
}
