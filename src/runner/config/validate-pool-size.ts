import { poolFloor } from '../../subscriber/pool-demand.js';
import { servedOptions } from '../connection-budget.js';
import type { ConfigIssues } from './config-issues.js';
import type { ConsumerConfig, RelayConfig } from './runner-config.js';

/**
 * A `database.poolSize` the file sets applies to every consumer process; one below what a
 * consumer's mode holds at once (a transactional handler's transaction each, a row-lock loop's
 * batch each: poolFloor) would leave its handlers or loops waiting for connections, each checkout
 * failing after queryTimeoutMs. Refused, naming the consumer that needs more. Without poolSize each
 * pool is sized for its consumer (connection-budget.ts), so this never fires.
 */
export function checkPoolFloor(
  issues: ConfigIssues,
  poolSize: unknown,
  served: {
    readonly consumers: ReadonlyMap<string, ConsumerConfig>;
    readonly relays: ReadonlyMap<string, RelayConfig>;
    readonly hasDlq: boolean;
  },
): void {
  if (typeof poolSize !== 'number' || !Number.isInteger(poolSize) || poolSize < 1) return;
  for (const consumer of served.consumers.values()) {
    const options = servedOptions(consumer, 'consumer', served.hasDlq);
    const floor = poolFloor(options);
    if (poolSize >= floor) continue;
    const why =
      options.lease === 'row-lock'
        ? `its ${floor} row-lock loops (ceil(concurrency ${options.concurrency} / fetchBatchSize ${options.fetchBatchSize}) + 1) each hold a connection for their batch`
        : `each of its ${options.concurrency} transactional handlers holds a connection for its transaction, plus 2 for claims and acks`;
    issues.expected(
      'database.poolSize',
      `at least ${floor} for consumer ${consumer.name}: ${why}`,
      poolSize,
      `Raise poolSize to ${floor} or more, or leave it out: each consumer's pool is then sized for what it serves (architecture/runner.md, "Connection budget").`,
    );
    return;
  }
}
