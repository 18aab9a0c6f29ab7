import type pg from 'pg';

import { decodeBody } from '../envelope/decode-body.js';
import { CORRELATION_ID_HEADER, stringHeader } from '../envelope/headers.js';
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
  timer_id: string | null;
  /** The class of the last error a handler run reported (its text stays in the table). */
  last_exception_type: string | null;
  ordering_key: string | null;
}

/** The row's correlation id (stored in its headers at publish; the row id for rows written by hand). */
export function correlationIdOf(record: ClaimedRecord): string {
  return stringHeader(record.headers, CORRELATION_ID_HEADER) ?? record.id;
}

/** The `body` accessor every DeliveredMessage shares (see there); set in its static block, where `#body` is in scope. */
let BODY: PropertyDescriptor;

/**
 * The claimed row as the handler's message. The body is decoded when the handler first reads it: a
 * malformed body then throws in the handler (a handler failure, like any other), and a handler that
 * never reads it — a relay sends the stored bytes — neither pays for the parse nor fails on it.
 *
 * A class, not an object literal with a getter: V8 builds a literal with an accessor through the
 * runtime, a new closure and a dictionary-mode object per message (~2.3 µs against ~0.3 µs here,
 * measured in Node 20; issue 18). `body` stays an own, enumerable accessor in the same key order,
 * so `{ ...message, body }`, `Object.keys` and JSON.stringify see what they saw: one shared
 * descriptor, defined at the same point of every construction, keeps the objects in fast mode.
 */
class DeliveredMessage implements Message {
  declare readonly id: string;
  declare readonly queue: string;
  declare readonly body: unknown;
  declare readonly payload: Buffer;
  declare readonly headers: Readonly<Record<string, string>>;
  declare readonly correlationId: string;
  declare readonly createdAt: Date;
  declare readonly deliveriesCount: number;
  declare readonly attemptsCount: number;
  declare readonly timerId: string | null;
  declare readonly orderingKey: string | null;
  // Declared, not defined: a class field would be defined (as undefined) before the constructor
  // runs, in declaration order, which would move `body` to the end of the keys.
  #body: unknown;
  #decoded = false;

  static {
    BODY = {
      get(this: DeliveredMessage): unknown {
        if (!this.#decoded) {
          this.#body = decodeBody(this.payload, this.headers);
          this.#decoded = true;
        }
        return this.#body;
      },
      enumerable: true,
      configurable: true,
    };
  }

  constructor(record: ClaimedRecord) {
    this.id = record.id;
    this.queue = record.queue;
    Object.defineProperty(this, 'body', BODY);
    this.payload = record.payload;
    this.headers = record.headers;
    this.correlationId = correlationIdOf(record);
    this.createdAt = record.created_at;
    this.deliveriesCount = record.deliveries_count;
    this.attemptsCount = record.attempts_count;
    this.timerId = record.timer_id;
    this.orderingKey = record.ordering_key;
  }
}

export function toMessage(record: ClaimedRecord): Message {
  return new DeliveredMessage(record);
}
