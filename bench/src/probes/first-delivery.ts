import type { ClaimedRecord } from '../../../src/subscriber/message.js';

/**
 * A claimed row on its first delivery, as the probes that run deliver() without a database
 * (`bench:seams`, `bench:deliver-cpu`) hand it over.
 */
export function firstDelivery(
  id: string,
  queue: string,
  payload: Buffer,
  headers: Readonly<Record<string, string>>,
  createdAt: Date,
): ClaimedRecord {
  return {
    id,
    queue,
    payload,
    headers,
    created_at: createdAt,
    deliveries_count: 1,
    attempts_count: 0,
    first_attempt_at: null,
    timer_id: null,
    last_exception_type: null,
    ordering_key: null,
  };
}
