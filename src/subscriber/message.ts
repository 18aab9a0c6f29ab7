import type pg from 'pg';

import { decodeBody } from '../envelope/decode-body.js';
import { CORRELATION_ID_HEADER } from '../envelope/headers.js';
import type { Stats } from '../instrumentation/custom-stats.js';
import type { PublishOptions } from '../producer/publish-options.js';

/** A message as a handler sees it. */
export interface Message<T = unknown> {
  /** The row id (a bigint, as a string). */
  readonly id: string;
  readonly queue: string;
  /** Decoded by content type: JSON value, string, or Buffer. */
  readonly body: T;
  /** The stored bytes. */
  readonly payload: Buffer;
  readonly headers: Readonly<Record<string, string>>;
  readonly correlationId: string;
  readonly createdAt: Date;
  /** Claims of this row so far, this one included (1 on first delivery; more after lease expiry or retry). */
  readonly deliveriesCount: number;
  /** Failed handler runs before this one. */
  readonly attemptsCount: number;
  readonly timerId: string | null;
  /** The publish's orderingKey: no other row of this key runs until this one is acked or ended. */
  readonly orderingKey: string | null;
}

/** What `ctx.causedBy()` returns: the publish options that tie a follow-up to the message that caused it. */
export interface CausedBy {
  /** The consumed message's correlation id: the whole conversation shares one. */
  readonly correlationId: string;
  /** `causation-id`: the consumed message's id. */
  readonly headers: Readonly<Record<string, string>>;
}

/** Per-delivery controls given to a handler. `ack`, `nack` and `reject` may be destructured: `(m, { ack }) => …`. */
export interface HandlerContext {
  /** The subscriber's name. */
  readonly subscriber: string;
  /**
   * Aborted when shutdown stops waiting for this handler or when its lease is known to be lost:
   * its outcome will not be recorded, so stop work that can be stopped.
   */
  readonly signal: AbortSignal;
  /** Custom metrics (counters, gauges, durations), exported by the middlewares that take stats. */
  readonly stats: Stats;
  /** Success: the row is deleted. */
  readonly ack: () => void;
  /**
   * Failure: retry after `delayMs` (capped at one year), or when the retry strategy says (which may
   * end the row). A `delayMs` that is not a finite number >= 0 throws `InvalidOptionError`.
   */
  readonly nack: (options?: { delayMs?: number; error?: unknown }) => void;
  /** Terminal now: the row ends as `rejected` (into the DLQ when on). */
  readonly reject: (reason?: string) => void;
  /**
   * The delivery's open transaction, in a `transactional: true` subscription: run your writes on it
   * and publish through it (`outbox.publish(ctx.client, …)`, `drizzle(ctx.client)`); txoutbox
   * commits them together with the ack, or rolls them back. Never COMMIT or ROLLBACK it yourself.
   * Outside a transactional subscription, reading it throws NotInTransactionError.
   */
  readonly client: pg.PoolClient;
  /**
   * Publishes a follow-up caused by this message: `correlation-id` = this message's (unless given),
   * `causation-id` = this message's id, and the trace continued (with tracingMiddleware). In a
   * transactional subscription it goes through `ctx.client` and commits with the ack; otherwise it
   * commits on its own through the Outbox's pool (at-least-once: a redelivery publishes it again).
   */
  readonly publish: (queue: string, body: unknown, options?: PublishOptions) => Promise<string | null>;
  /** The options a follow-up needs to carry this cause, for a publish you make yourself (publishBatch, an adapter). */
  readonly causedBy: () => CausedBy;
}

export type Handler<T = unknown> = (message: Message<T>, ctx: HandlerContext) => Promise<void> | void;

/** A claimed row as the claim statement returns it. */
export interface ClaimedRecord {
  id: string;
  queue: string;
  payload: Buffer;
  headers: Record<string, string>;
  created_at: Date;
  deliveries_count: number;
  attempts_count: number;
  first_attempt_at: Date | null;
  last_attempt_at: Date | null;
  timer_id: string | null;
  /** The class of the last error a handler run reported (its text stays in the table). */
  last_exception_type: string | null;
  ordering_key: string | null;
}

/** The row's correlation id (stored in its headers at publish; the row id for rows written by hand). */
export function correlationIdOf(record: ClaimedRecord): string {
  return record.headers[CORRELATION_ID_HEADER] ?? record.id;
}

/**
 * The claimed row as the handler's message. The body is decoded when the handler first reads it: a
 * malformed body then throws in the handler (a handler failure, like any other), and a handler that
 * never reads it — a relay sends the stored bytes — neither pays for the parse nor fails on it.
 */
export function toMessage(record: ClaimedRecord): Message {
  let body: unknown;
  let decoded = false;
  return {
    id: record.id,
    queue: record.queue,
    get body() {
      if (!decoded) {
        body = decodeBody(record.payload, record.headers);
        decoded = true;
      }
      return body;
    },
    payload: record.payload,
    headers: record.headers,
    correlationId: correlationIdOf(record),
    createdAt: record.created_at,
    deliveriesCount: record.deliveries_count,
    attemptsCount: record.attempts_count,
    timerId: record.timer_id,
    orderingKey: record.ordering_key,
  };
}
