import type { DeadLetter } from '../dlq/dead-letter-row.js';
import type { DlqFailureReason } from '../dlq/dlq-options.js';
import { inspectBody } from '../envelope/decode-body.js';
import type { OutboxRow } from '../producer/outbox-row.js';
import type { ClaimedRecord } from '../subscriber/message.js';

/** One row of the in-memory outbox table: the columns of the real one (times in ms since the epoch). */
export interface MemoryRow {
  /** The numeric id: ids are drawn at publish, like the identity column, so a rolled-back publish leaves a gap. */
  readonly seq: number;
  readonly queue: string;
  readonly payload: Buffer;
  readonly headers: Record<string, string>;
  readonly createdAt: number;
  nextAttemptAt: number;
  firstAttemptAt: number | null;
  lastAttemptAt: number | null;
  attemptsCount: number;
  deliveriesCount: number;
  /** When the row was claimed; null when it is not leased. */
  acquiredAt: number | null;
  readonly timerId: string | null;
  readonly orderingKey: string | null;
  /** A keyed row's own due time as published (activate_at), which its key may have pushed later; null unkeyed. */
  readonly activateAt: number | null;
  lastException: string | null;
  lastExceptionType: string | null;
}

const dateOrNull = (ms: number | null): Date | null => (ms === null ? null : new Date(ms));

/**
 * The row's payload and headers as a read hands them out: copies, as every real claim and read
 * decodes its own from the row. Shared, a handler that mutated its message's headers or payload
 * and threw saw its mutation on the retry, and the records showed it.
 */
export function copiesOf(row: MemoryRow): { readonly payload: Buffer; readonly headers: Record<string, string> } {
  return { payload: Buffer.from(row.payload), headers: { ...row.headers } };
}

/** The body as an inspection read shows it, decoded from a copy: a binary body is its bytes, not the row's. */
export function inspectRowBody(row: MemoryRow): unknown {
  return inspectBody(Buffer.from(row.payload), row.headers);
}

/** The row as the claim statement returns it (the handler's message is made from this). */
export function toClaimedRecord(row: MemoryRow): ClaimedRecord {
  return {
    id: String(row.seq),
    queue: row.queue,
    ...copiesOf(row),
    created_at: new Date(row.createdAt),
    deliveries_count: row.deliveriesCount,
    attempts_count: row.attemptsCount,
    first_attempt_at: dateOrNull(row.firstAttemptAt),
    timer_id: row.timerId,
    last_exception_type: row.lastExceptionType,
    ordering_key: row.orderingKey,
  };
}

/** The row as fetchUnprocessed() returns it. */
export function toOutboxRow(row: MemoryRow): OutboxRow {
  const { payload, headers } = copiesOf(row);
  return {
    id: String(row.seq),
    queue: row.queue,
    body: inspectBody(payload, headers),
    payload,
    headers,
    createdAt: new Date(row.createdAt),
    nextAttemptAt: new Date(row.nextAttemptAt),
    firstAttemptAt: dateOrNull(row.firstAttemptAt),
    lastAttemptAt: dateOrNull(row.lastAttemptAt),
    attemptsCount: row.attemptsCount,
    deliveriesCount: row.deliveriesCount,
    acquiredAt: dateOrNull(row.acquiredAt),
    timerId: row.timerId,
  };
}

/** What the DLQ move writes besides the row's own columns (see subscriber/sql.ts dlqMove). */
export interface DeadLetterWrite {
  readonly id: string;
  readonly reason: DlqFailureReason;
  readonly failedAt: number;
}

/** The DLQ row as outbox.dlq.get() returns it. */
export function toDeadLetter(row: MemoryRow, write: DeadLetterWrite): DeadLetter {
  const { payload, headers } = copiesOf(row);
  return {
    id: write.id,
    originalId: String(row.seq),
    queue: row.queue,
    headers,
    createdAt: new Date(row.createdAt),
    firstAttemptAt: dateOrNull(row.firstAttemptAt),
    lastAttemptAt: dateOrNull(row.lastAttemptAt),
    attemptsCount: row.attemptsCount,
    deliveriesCount: row.deliveriesCount,
    timerId: row.timerId,
    orderingKey: row.orderingKey,
    failureReason: write.reason,
    lastExceptionType: row.lastExceptionType,
    lastException: row.lastException,
    failedAt: new Date(write.failedAt),
    body: inspectBody(payload, headers),
    payload,
  };
}
