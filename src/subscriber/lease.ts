import type { ClaimedRecord } from './message.js';

/** A claimed row and the lease it was claimed under. */
export interface Lease {
  readonly record: ClaimedRecord;
  /** The fence of its outcome write. Changes only when this subscription re-claims a row it holds (subscription.ts). */
  token: string;
  /** performance.now() when the lease was taken or last renewed: a local estimate of its age. */
  leasedAt: number;
}

/** The fields that place one delivery, in its events and log lines. */
export function deliveryScope(lease: Lease, subscriber: string) {
  const { record } = lease;
  return { queue: record.queue, subscriber, messageId: record.id, deliveriesCount: record.deliveries_count };
}
