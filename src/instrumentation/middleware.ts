/**
 * The middleware seam (DESIGN.md §5): code that runs *around* each consume and each publish, for
 * what needs to bracket the work — a span that is active inside the handler, a duration, an
 * in-flight gauge. Outbox-internal events with no message in scope (fetches, lost leases,
 * max-delivery drops) are the recorder seam's (events.ts); the two run together.
 *
 * Order: `middlewares: [a, b]` runs a around b around the handler (a is outermost), for consume
 * and publish alike. See architecture/observability.md.
 */

/** How a handler run ended, FastStream's status vocabulary. */
export type ConsumeStatus =
  /** Returned (or ctx.ack()). */
  | 'acked'
  /** ctx.nack() without throwing. */
  | 'nacked'
  /** ctx.reject() without throwing. */
  | 'rejected'
  /** The handler (or a middleware, or decoding the body) threw. */
  | 'error';

/** What txoutbox will write for this delivery once the middleware chain has returned. */
export type ConsumeOutcome =
  | { readonly kind: 'ack' }
  | { readonly kind: 'retry'; readonly delayMs: number }
  | { readonly kind: 'terminal'; readonly reason: 'retry_terminal' | 'rejected' };

/**
 * The result `next()` resolves with in a consume middleware: how the handler ended, even when it
 * threw (the handler's error is in `error`, not a rejection). `next()` rejects only when a
 * middleware nested inside this one threw or returned without calling its own `next()`; the
 * delivery then fails (retry by the ack policy) whatever the outer middleware does with it. (And
 * when this middleware calls it a second time, or after returning: see Middleware.)
 */
export interface ConsumeResult {
  readonly status: ConsumeStatus;
  /** What the handler threw (status 'error'), or the error passed to ctx.nack(). */
  readonly error: unknown;
  /** The handler's run time. */
  readonly durationSeconds: number;
  readonly outcome: ConsumeOutcome;
}

/**
 * What the database did with a delivery's outcome, once txoutbox wrote it after the chain returned:
 * 'written' (the ack deleted the row, the retry or terminal move landed), 'lease_lost' (the fenced
 * write matched nothing: another delivery owns the row), 'failed' (the write failed; the row is
 * redelivered after its lease), 'abandoned' (stop() stopped waiting; not written, redelivered).
 */
export type OutcomeWrite = 'written' | 'lease_lost' | 'failed' | 'abandoned';

/** One delivery as a consume middleware sees it (the decoded body is the handler's). */
export interface ConsumeContext {
  readonly subscriber: string;
  readonly queue: string;
  /** The row id: for spans and logs, never a metric label. */
  readonly messageId: string;
  readonly correlationId: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly sizeBytes: number;
  readonly deliveriesCount: number;
  readonly createdAt: Date;
  /**
   * Set by a tracing middleware to the trace id of the span it started, so a metrics middleware
   * can attach it to duration samples as an exemplar (read it after `next()` resolves).
   */
  traceId: string | undefined;
  /**
   * Resolves once the outcome is written, with what the database did (never rejects). An ack's
   * DELETE is coalesced with others after the chain returned, so a handler that returned can still
   * have its ack fenced off: count outcomes from this, not from `next()`'s status alone.
   */
  readonly written: Promise<OutcomeWrite>;
}

/** One publish or publishBatch call as a publish middleware sees it. */
export interface PublishContext {
  readonly queue: string;
  /** Bodies in the call: 1 for publish(), N for publishBatch(). */
  readonly messageCount: number;
  readonly batch: boolean;
  /** Encoded bytes of all bodies. */
  readonly sizeBytes: number;
  /** The correlation id of a single publish (or the one shared by a batch), when known. */
  readonly correlationId: string | undefined;
  /**
   * Headers added to every row of this call: a tracing middleware injects `traceparent` here.
   * They cannot replace `content-type` or `correlation-id`.
   */
  readonly headers: Record<string, string>;
  /** Set by a tracing middleware (see ConsumeContext.traceId). */
  traceId: string | undefined;
}

/** What `next()` resolves with in a publish middleware; it rejects when the insert fails. */
export interface PublishResult {
  /** Row ids in body order; null for a single publish whose timerId was taken. */
  readonly ids: readonly (string | null)[];
  /** Rows actually inserted (a timer conflict inserts 0). */
  readonly inserted: number;
}

/** A handler's custom stat (ctx.stats), after key sanitising and kind checks. */
export interface CustomStat {
  readonly kind: 'counter' | 'gauge' | 'duration';
  /** Sanitised to [a-zA-Z0-9_]. */
  readonly key: string;
  /** Counter increment, gauge value, or duration in seconds. */
  readonly value: number;
  readonly subscriber: string;
  readonly queue: string;
}

/**
 * Any of the hooks may be left out. `consume` and `publish` must call `next()` once, before their
 * promise settles: a second call, or one after they returned, runs nothing and rejects with a
 * `MiddlewareError` (and a logged warning). A middleware that throws fails the delivery like a
 * throwing handler would (retry by the ack policy), and one that swallows the handler's failure
 * cannot turn it into an ack: the outcome is decided by what `next()` resolved with. `stat` is
 * synchronous and must not block; its errors are logged and ignored.
 */
export interface Middleware {
  /** Names the middleware in logs. */
  readonly name?: string;
  consume?(ctx: ConsumeContext, next: () => Promise<ConsumeResult>): Promise<void>;
  publish?(ctx: PublishContext, next: () => Promise<PublishResult>): Promise<void>;
  stat?(stat: CustomStat): void;
}
