import { InvalidOptionError } from '../errors.js';
import { rejectUnknownOptions } from '../util/known-options.js';
import { assertTransactional, type TransactionTarget } from './executor.js';
import { type OutboxRow, type OutboxRowRecord, toOutboxRow } from './outbox-row.js';
import { validateQueue } from './publish-options.js';
import type { ProducerSql } from './sql.js';
import { openPort } from './transaction-port.js';

export interface FetchUnprocessedOptions {
  /** Only this queue. @default every queue */
  readonly queue?: string;
  /** At most this many rows, in id order. @default 100 */
  readonly limit?: number;
}

export const MAX_FETCH_UNPROCESSED = 10_000;

/**
 * The options' checks, before any statement; returns the limit. Shared with txoutbox/testing's
 * fetchUnprocessed, which must refuse what this one refuses.
 */
export function fetchLimit(options: FetchUnprocessedOptions): number {
  // Called from JavaScript with anything: `{ queues: 'a' }` read every queue, `{ limt: 5 }` 100 rows.
  if (typeof options !== 'object' || (options as FetchUnprocessedOptions | null) === null) {
    throw new InvalidOptionError({
      option: 'fetchUnprocessed options',
      value: options,
      expected: 'an object such as { queue, limit }',
    });
  }
  rejectUnknownOptions(options, 'fetchUnprocessed', ['queue', 'limit']);
  const limit = options.limit ?? 100;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_FETCH_UNPROCESSED) {
    throw new InvalidOptionError({ option: 'limit', value: limit, expected: `an integer from 1 to ${MAX_FETCH_UNPROCESSED}` });
  }
  return limit;
}

/**
 * Reads rows without leasing them, through `target`: the Outbox's pool, or the caller's
 * transaction (which then sees its own uncommitted rows). A read commits nothing, so any
 * executor is accepted.
 */
export async function fetchUnprocessed(
  sql: ProducerSql,
  target: TransactionTarget,
  prepared: boolean,
  options: FetchUnprocessedOptions,
): Promise<OutboxRow[]> {
  assertTransactional('fetchUnprocessed', target, true);
  const limit = fetchLimit(options);
  const transaction = await openPort(target, prepared, false);
  const rows =
    options.queue === undefined
      ? await transaction.run(sql.fetchUnprocessed, [limit])
      : await transaction.run(sql.fetchUnprocessedQueue, [validateQueue(options.queue), limit]);
  return (rows as readonly unknown[] as readonly OutboxRowRecord[]).map(toOutboxRow);
}

/** fetchUnprocessed(options) or fetchUnprocessed(transaction, options): tells the two apart. */
export function isFetchTarget(value: unknown): value is TransactionTarget {
  return value !== null && typeof value === 'object' && typeof (value as { query?: unknown }).query === 'function';
}
