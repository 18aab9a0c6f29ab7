import { decodeBody } from '../envelope/decode-body.js';

/** A row of the outbox table as `fetchUnprocessed()` returns it (no lease is taken). */
export interface OutboxRow {
  /** The row id: a bigint, as a string so no precision is lost. */
  readonly id: string;
  readonly queue: string;
  /** Decoded by content type: JSON value, string, or Buffer. */
  readonly body: unknown;
  /** The stored bytes. */
  readonly payload: Buffer;
  readonly headers: Readonly<Record<string, string>>;
  readonly createdAt: Date;
  readonly nextAttemptAt: Date;
  readonly firstAttemptAt: Date | null;
  readonly lastAttemptAt: Date | null;
  readonly attemptsCount: number;
  readonly deliveriesCount: number;
  /** When the current lease was taken, or null when the row is not leased. */
  readonly acquiredAt: Date | null;
  readonly timerId: string | null;
}

export interface OutboxRowRecord {
  id: string;
  queue: string;
  payload: Buffer;
  headers: Record<string, string>;
  created_at: Date;
  next_attempt_at: Date;
  first_attempt_at: Date | null;
  last_attempt_at: Date | null;
  attempts_count: number;
  deliveries_count: number;
  acquired_at: Date | null;
  timer_id: string | null;
}

export function toOutboxRow(record: OutboxRowRecord): OutboxRow {
  let body: unknown;
  try {
    body = decodeBody(record.payload, record.headers);
  } catch {
    // An inspection read must not fail on one malformed row: show its bytes instead.
    body = record.payload;
  }
  return {
    id: record.id,
    queue: record.queue,
    body,
    payload: record.payload,
    headers: record.headers,
    createdAt: record.created_at,
    nextAttemptAt: record.next_attempt_at,
    firstAttemptAt: record.first_attempt_at,
    lastAttemptAt: record.last_attempt_at,
    attemptsCount: record.attempts_count,
    deliveriesCount: record.deliveries_count,
    acquiredAt: record.acquired_at,
    timerId: record.timer_id,
  };
}
