import type { Emit } from '../instrumentation/recorders.js';

/**
 * One `fetched` event per queue a claim listed, with the rows it brought back for that queue.
 * `listed`: the claim's queues. A subscription over many queues lists only those with rows due
 * (queue-schedule.ts): a queue left out was not fetched, so it gets no event, and
 * `outbox_fetches_total` counts claims that happened. Rows are counted in one pass (with 1,000
 * queues a filter per queue was 1,000 passes per claim).
 */
export function emitFetched<R>(
  emit: Emit,
  subscriber: string,
  listed: readonly string[],
  rows: readonly R[],
  queueOf: (row: R) => string,
): void {
  if (emit === undefined) return;
  if (listed.length === 1) {
    emit({ type: 'fetched', queue: listed[0] as string, subscriber, count: rows.length });
    return;
  }
  const counts = new Map<string, number>();
  for (const row of rows) {
    const queue = queueOf(row);
    counts.set(queue, (counts.get(queue) ?? 0) + 1);
  }
  for (const queue of listed) emit({ type: 'fetched', queue, subscriber, count: counts.get(queue) ?? 0 });
}
