import type { AckedEvent, DispatchedEvent } from '../instrumentation/events.js';
import type { ClaimedRecord } from './message.js';

/** A claimed row and the lease it was claimed under. */
export interface Lease {
  readonly record: ClaimedRecord;
  /** The fence of its outcome write. Changes only when this subscription re-claims a row it holds (subscription.ts). */
  token: string;
  /** performance.now() when the lease was taken or last renewed: a local estimate of its age. */
  leasedAt: number;
  /**
   * performance.now() taken before the statement that set the lease's time on the server (its
   * claim, its last renewal) was sent: the server's acquired_at is no earlier, so the lease cannot
   * run out there before `heldFrom + leaseTtlMs` (outcome-writer.ts leaseHeldUntil). Absent: unknown.
   */
  heldFrom?: number;
}

/** The fields that place one delivery, in its events and log lines. */
export function deliveryScope(lease: Lease, subscriber: string) {
  const { record } = lease;
  return { queue: record.queue, subscriber, messageId: record.id, deliveriesCount: record.deliveries_count };
}

/*
 * The two events built per delivery (when a recorder reads them) are one object literal each, in
 * deliveryScope's key order: a spread of deliveryScope() into the event made two objects and a copy
 * per message, 0.3–1.0 µs of a Prometheus-instrumented delivery's 1.6–2.1 µs in bench:seams (issue 18,
 * BENCHMARKS.md "Round nine"). The rare events keep the spread.
 */

/** The `dispatched` event of a delivery about to run its handler. */
export function dispatchedEvent(lease: Lease, subscriber: string, nowMs: number): DispatchedEvent {
  const { record } = lease;
  return {
    type: 'dispatched',
    queue: record.queue,
    subscriber,
    messageId: record.id,
    deliveriesCount: record.deliveries_count,
    sizeBytes: record.payload.length,
    ageSeconds: Math.max(0, (nowMs - record.created_at.getTime()) / 1000),
  };
}

/** The `acked` event of a delivery whose ack deleted its row. */
export function ackedEvent(lease: Lease, subscriber: string, durationSeconds: number): AckedEvent {
  const { record } = lease;
  return {
    type: 'acked',
    queue: record.queue,
    subscriber,
    messageId: record.id,
    deliveriesCount: record.deliveries_count,
    durationSeconds,
  };
}
