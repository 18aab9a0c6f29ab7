import type { RunnerConfig } from './runner-config.js';

/**
 * Whether this config's supervisor takes part in the queue-state leader election
 * (metrics.prometheus.queueStateLeader; architecture/metrics.md, "One reader per cluster"). Its
 * lock is a session lock, opened where LISTEN goes: behind a transaction pooler without
 * `database.listenUrl` the session would go through the pooler, whose server connections do not
 * keep it (every runner could "hold" the lock on one server process, or none read), so there every
 * runner reads, as with queueStateLeader: false.
 */
export function electsQueueStateLeader(config: RunnerConfig): boolean {
  const { enabled, queueStateLeader } = config.metrics.prometheus;
  const directSession = !config.database.transactionPooling || config.database.listenUrl !== undefined;
  return enabled && queueStateLeader && directSession;
}
