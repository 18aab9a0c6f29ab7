import { inspectBody } from '../envelope/decode-body.js';
import { rowHeaders } from '../envelope/headers.js';
import { bodyPreviewOf } from '../queues/peek.js';
import type { DlqFailureReason } from './dlq-options.js';

/** What every DLQ row carries besides its body: the row as list(), listPreviews() and get() show it. */
export interface DeadLetterFields {
  /** The DLQ row id (bigint, as a string): what get(), redrive() and the cursor use. */
  readonly id: string;
  /** The row's id in the outbox before it died. */
  readonly originalId: string;
  readonly queue: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly createdAt: Date;
  readonly firstAttemptAt: Date | null;
  readonly lastAttemptAt: Date | null;
  readonly attemptsCount: number;
  readonly deliveriesCount: number;
  readonly timerId: string | null;
  /** The publish's orderingKey; a redrive publishes the row again under it, at the end of the key's line. */
  readonly orderingKey: string | null;
  readonly failureReason: DlqFailureReason;
  /** The class of the last exception (exception_type in metrics), or null. */
  readonly lastExceptionType: string | null;
  /** renderError's text of the last exception, or null. */
  readonly lastException: string | null;
  readonly failedAt: Date;
}

/** A row of the DLQ table, decoded like fetchUnprocessed's rows (list() and get()). */
export interface DeadLetter extends DeadLetterFields {
  /** Decoded by content type: JSON value, string, or Buffer (also when the bytes do not decode). */
  readonly body: unknown;
  /** The stored bytes. */
  readonly payload: Buffer;
}

/**
 * A DLQ row as listPreviews() shows it: the start of its body and its size, never the body. A
 * type of its own (no `body`, no `payload`), so a preview is never mistaken for the body.
 */
export interface DeadLetterPreview extends DeadLetterFields {
  /**
   * The first `bodyPreviewBytes` of the stored payload read as UTF-8, never a split character: a
   * string body or a JSON body's text as published (as peek()'s preview), bytes read as UTF-8.
   */
  readonly bodyPreview: string;
  /** True when the payload is longer than bodyPreview. */
  readonly bodyPreviewTruncated: boolean;
  /** The stored payload's size in bytes. */
  readonly payloadBytes: number;
  /**
   * The payload's first `bodyPreviewBytes` bytes as stored, or all of it when it is no longer
   * (`payloadHead.length === payloadBytes`): the bytes a bounded dump prints (`dlq list --json`).
   */
  readonly payloadHead: Buffer;
}

interface FieldsRecord {
  id: string;
  original_id: string;
  queue: string;
  headers: Record<string, string>;
  created_at: Date;
  first_attempt_at: Date | null;
  last_attempt_at: Date | null;
  attempts_count: number;
  deliveries_count: number;
  timer_id: string | null;
  ordering_key: string | null;
  failure_reason: DlqFailureReason;
  last_exception: string | null;
  last_exception_type: string | null;
  failed_at: Date;
  /** list and listPreviews only: the keyset cursor's time (see dlq-sql.ts). */
  cursor_failed_at?: string;
  /** list and listPreviews only: what the row cost the page's byte budget. */
  row_bytes?: number;
  /** list and listPreviews only: the rows the page had under its limit, before the budget. */
  candidate_count?: number;
}

export interface DeadLetterRecord extends FieldsRecord {
  payload: Buffer;
}

export interface DeadLetterPreviewRecord extends FieldsRecord {
  /** The payload's first bodyPreviewBytes + 1 bytes: the one past the preview tells a cut character. */
  payload_head: Buffer;
  /** octet_length(payload): read from the value's header, the body itself is not fetched. */
  payload_bytes: number;
}

function fieldsOf(record: FieldsRecord): DeadLetterFields {
  return {
    id: record.id,
    originalId: record.original_id,
    queue: record.queue,
    headers: rowHeaders(record.headers),
    createdAt: record.created_at,
    firstAttemptAt: record.first_attempt_at,
    lastAttemptAt: record.last_attempt_at,
    attemptsCount: record.attempts_count,
    deliveriesCount: record.deliveries_count,
    timerId: record.timer_id,
    orderingKey: record.ordering_key,
    failureReason: record.failure_reason,
    lastExceptionType: record.last_exception_type,
    lastException: record.last_exception,
    failedAt: record.failed_at,
  };
}

export function toDeadLetter(record: DeadLetterRecord): DeadLetter {
  return { ...fieldsOf(record), body: inspectBody(record.payload, record.headers), payload: record.payload };
}

export function toDeadLetterPreview(record: DeadLetterPreviewRecord, bodyPreviewBytes: number): DeadLetterPreview {
  // peek()'s cut: UTF-8 bytes, backed up to a character's start. payload_head holds one byte past
  // the preview, so a character split by the substring is seen and left out, never half shown.
  return {
    ...fieldsOf(record),
    ...bodyPreviewOf(record.payload_head, bodyPreviewBytes),
    payloadBytes: record.payload_bytes,
    payloadHead: record.payload_head.subarray(0, bodyPreviewBytes),
  };
}
