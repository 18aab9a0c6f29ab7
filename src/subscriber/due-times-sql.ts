import type pg from 'pg';

import { dueInMs } from '../producer/sql.js';
import type { SchemaNames } from '../schema/schema-names.js';

/** At most this many rows per read, over all queues: a read of many queues asks fewer of each (one at least). */
const MAX_ROWS_PER_READ = 10_000;
/** At most this many due times of one queue per read; a queue with more is read again later. */
const MAX_ROWS_PER_QUEUE = 100;

/** How many of each queue's delayed rows one read of `queues` asks for. */
export function dueRowsPerQueue(queues: number): number {
  return Math.max(1, Math.min(MAX_ROWS_PER_QUEUE, Math.floor(MAX_ROWS_PER_READ / Math.max(1, queues))));
}

/**
 * $1 queues, $2 rows per queue. The earliest delayed rows of each queue (`retriesOnly`: those
 * retried, attempts_count > 0, filtered in the walk), as the milliseconds until each is due by the
 * database's clock (the announcement's measure, producer/sql.ts). One walk of <t>_ready_idx
 * (queue, next_attempt_at, id) per queue, from now on: leased rows are not in it (their lease
 * decides when they are claimable, not their due time) and due rows are left out.
 */
function dueTimesText(names: SchemaNames, retriesOnly: boolean): string {
  return `SELECT q.queue, d.due_in_ms
FROM unnest($1::text[]) AS q(queue)
CROSS JOIN LATERAL (
  SELECT ${dueInMs('o.next_attempt_at')} AS due_in_ms
  FROM ${names.outbox.sql} o
  WHERE o.queue = q.queue AND o.acquired_token IS NULL AND o.next_attempt_at > now()${retriesOnly ? ' AND o.attempts_count > 0' : ''}
  ORDER BY o.next_attempt_at
  LIMIT $2::int
) d`;
}

/** One queue's delayed rows as read: when each is due, in ms from the read, ascending. */
export interface QueueDueTimes {
  readonly queue: string;
  readonly inMs: number[];
  /** The read stopped at its limit: later rows of the queue were not read. */
  readonly more: boolean;
}

/**
 * Reads when the delayed rows of `queues` come due, on `client` (the LISTEN connection): the rows
 * announced on the channel while nobody here listened, or (`retriesOnly`) the retries a stopping
 * Outbox hands over (subscriber/consumer-signals.ts).
 */
export async function readDueTimes(
  client: pg.ClientBase,
  names: SchemaNames,
  queues: readonly string[],
  retriesOnly = false,
): Promise<QueueDueTimes[]> {
  const perQueue = dueRowsPerQueue(queues.length);
  const { rows } = await client.query<{ queue: string; due_in_ms: number }>(dueTimesText(names, retriesOnly), [queues, perQueue]);
  const byQueue = new Map<string, number[]>();
  for (const row of rows) {
    const times = byQueue.get(row.queue);
    if (times === undefined) byQueue.set(row.queue, [row.due_in_ms]);
    else times.push(row.due_in_ms);
  }
  return [...byQueue].map(([queue, inMs]) => ({ queue, inMs, more: inMs.length === perQueue }));
}
