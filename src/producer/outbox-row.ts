import { inspectBody } from '../envelope/decode-body.js';
import { rowHeaders } from '../envelope/headers.js';

/** What an outbox row carries besides its body: the row as fetchUnprocessed(), peek() and peekPreviews() show it. */
export interface OutboxRowFields {
  /** The row id: a bigint, as a string so no precision is lost. */
  readonly id: string;
  readonly queue: string;
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

/** A row of the outbox table as `fetchUnprocessed()` returns it (no lease is taken). */
export interface OutboxRow extends OutboxRowFields {
  /** Decoded by content type: JSON value, string, or Buffer. */
  readonly body: unknown;
  /** The stored bytes. */
  readonly payload: Buffer;
}

/**
 * A row's fields as PORTABLE_ROW_FIELDS returns them, in the same shape from every driver
 * (src/producer/sql.ts): headers as JSON text, timestamps as epoch milliseconds.
 */
export interface OutboxRowFieldsRecord {
  id: string;
  queue: string;
  headers: string;
  // number | string: a driver set up to return floats or ints as strings is read the same.
  created_at: number | string;
  next_attempt_at: number | string;
  first_attempt_at: number | string | null;
  last_attempt_at: number | string | null;
  attempts_count: number | string;
  deliveries_count: number | string;
  acquired_at: number | string | null;
  timer_id: string | null;
}

/** A row as fetchUnprocessed's statement returns it (PORTABLE_ROW_COLUMNS): its fields, and the payload as base64. */
export interface OutboxRowRecord extends OutboxRowFieldsRecord {
  payload: string;
}

const dateOf = (epochMs: number | string): Date => new Date(Number(epochMs));
const optionalDateOf = (epochMs: number | string | null): Date | null => (epochMs === null ? null : dateOf(epochMs));

export function toOutboxRow(record: OutboxRowRecord): OutboxRow {
  const fields = outboxRowFieldsOf(record);
  const payload = Buffer.from(record.payload, 'base64');
  return { ...fields, body: inspectBody(payload, fields.headers), payload };
}

export function outboxRowFieldsOf(record: OutboxRowFieldsRecord): OutboxRowFields {
  return {
    id: record.id,
    queue: record.queue,
    headers: rowHeaders(JSON.parse(record.headers)),
    createdAt: dateOf(record.created_at),
    nextAttemptAt: dateOf(record.next_attempt_at),
    firstAttemptAt: optionalDateOf(record.first_attempt_at),
    lastAttemptAt: optionalDateOf(record.last_attempt_at),
    attemptsCount: Number(record.attempts_count),
    deliveriesCount: Number(record.deliveries_count),
    acquiredAt: optionalDateOf(record.acquired_at),
    timerId: record.timer_id,
  };
}
