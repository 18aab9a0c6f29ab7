import { type ResolvedSubscribeOptions, rowLockLoops, TRANSACTIONAL_OVERHEAD_CONNECTIONS } from './subscription-options.js';

/**
 * Claim loops of a plain subscription that may be in flight at once: the primary one, and the
 * second that overlaps it while a backlog lasts (subscription.ts, "Pipelined claims").
 */
export const CLAIM_LOOPS = 2;

/**
 * The connection the per-row statements share: retry UPDATEs and DLQ moves, releases of unstarted
 * rows, ctx.publish's autocommit INSERT, ping() and the throughput tally's flush. Each is one
 * short statement, so they queue for it briefly instead of each holding a connection of its own.
 */
export const SHARED_CONNECTIONS = 1;

/**
 * The connections one subscription's work uses at once with every handler slot busy: the pool
 * size at which nothing it does waits for a connection of its own pool (architecture/runner.md,
 * "Connection budget"). By mode:
 *
 *   token (default)  CLAIM_LOOPS + 1 (the acker: one DELETE in flight) + SHARED_CONNECTIONS
 *                    + 1 with lease renewal (one renewal in flight)                       = 4 or 5
 *   transactional    concurrency (each running handler holds its transaction)
 *                    + TRANSACTIONAL_OVERHEAD_CONNECTIONS (claims and acks)
 *                    + SHARED_CONNECTIONS + 1 with lease renewal           = concurrency + 3 (+ 1)
 *   row-lock         rowLockLoops (ceil(concurrency / fetchBatchSize) + 1, each holding its batch's
 *                    transaction; outcomes are written inside it) + SHARED_CONNECTIONS
 *
 * A token subscription's concurrency does not appear: its handlers hold no connection, and their
 * per-row writes share one. More connections than this make nothing faster; fewer make claims and
 * acks wait behind each other (and, for the two modes that hold connections, handlers wait).
 */
export function poolDemand(
  options: Pick<ResolvedSubscribeOptions, 'lease' | 'transactional' | 'concurrency' | 'fetchBatchSize' | 'leaseRenewIntervalMs'>,
): number {
  if (options.lease === 'row-lock') return rowLockLoops(options) + SHARED_CONNECTIONS;
  const renewal = options.leaseRenewIntervalMs === undefined ? 0 : 1;
  if (options.transactional) {
    return options.concurrency + TRANSACTIONAL_OVERHEAD_CONNECTIONS + SHARED_CONNECTIONS + renewal;
  }
  return CLAIM_LOOPS + 1 + SHARED_CONNECTIONS + renewal;
}

/**
 * The smallest pool a subscription can run on without its handlers or loops waiting for each
 * other's connections (the threshold of transactionalPoolWarning and rowLockPoolWarning); a token
 * subscription runs on one connection, only slower.
 */
export function poolFloor(
  options: Pick<ResolvedSubscribeOptions, 'lease' | 'transactional' | 'concurrency' | 'fetchBatchSize'>,
): number {
  if (options.lease === 'row-lock') return rowLockLoops(options);
  if (options.transactional) return options.concurrency + TRANSACTIONAL_OVERHEAD_CONNECTIONS;
  return 1;
}
