/**
 * The recorder seam's event catalog (DESIGN.md §5): what happened inside the outbox, including
 * what no message-scoped hook can see (fetches, lost leases, drops before a handler runs).
 * Outcome events report what the database did: `acked` only after the DELETE returned the row,
 * `lease_lost` when it returned nothing. `messageId` is for logs and traces, never a metric label.
 */

export type TerminalReason = 'max_deliveries' | 'retry_terminal' | 'rejected';
export type LeasePhase = 'terminal' | 'retry';

interface MessageScope {
  readonly queue: string;
  readonly subscriber: string;
  readonly messageId: string;
  readonly deliveriesCount: number;
}

export interface FetchedEvent {
  readonly type: 'fetched';
  readonly queue: string;
  readonly subscriber: string;
  /** Rows claimed for this queue by this fetch; 0 for an empty fetch. */
  readonly count: number;
}

export interface DispatchedEvent extends MessageScope {
  readonly type: 'dispatched';
  readonly sizeBytes: number;
  /** created_at → now, by this process's clock. */
  readonly ageSeconds: number;
}

export interface AckedEvent extends MessageScope {
  readonly type: 'acked';
  readonly durationSeconds: number;
}

export interface NackedRetriedEvent extends MessageScope {
  readonly type: 'nacked_retried';
  readonly durationSeconds: number;
  readonly nextDelaySeconds: number;
  readonly exceptionType?: string;
}

export interface NackedTerminalEvent extends MessageScope {
  readonly type: 'nacked_terminal';
  readonly reason: TerminalReason;
  /** Absent for `max_deliveries`: no handler ran. */
  readonly durationSeconds?: number;
  readonly exceptionType?: string;
}

export interface LeaseLostEvent extends MessageScope {
  readonly type: 'lease_lost';
  readonly phase: LeasePhase;
}

export interface DlqWrittenEvent extends MessageScope {
  readonly type: 'dlq_written';
  readonly failureReason: TerminalReason;
  readonly exceptionType?: string;
}

export interface DrainTimeoutEvent {
  readonly type: 'drain_timeout';
  readonly subscriber: string;
  readonly queues: readonly string[];
  /** Handlers still running when the graceful timeout ran out. */
  readonly inFlight: number;
  readonly timeoutSeconds: number;
}

export interface PublishedEvent {
  readonly type: 'published';
  readonly queue: string;
  readonly status: 'ok' | 'error';
  /** Rows inserted: 1 or 0 (timer conflict) for publish, N for a batch, 0 on error. */
  readonly count: number;
  /** Messages the call tried to publish: 1, or the batch's size; what a failed call counts as not sent. */
  readonly messageCount: number;
  readonly sizeBytes: number;
  readonly durationSeconds: number;
  readonly exceptionType?: string;
}

/** What became of one relayed row's send (outbox.relay): confirmed by the broker, refused for good, or failed (retried). */
export type RelayOutcome = 'confirmed' | 'refused' | 'failed';

/** One row sent by a relay, once the sink settled. */
export interface RelayedEvent extends MessageScope {
  readonly type: 'relayed';
  /** The sink's name (`rabbitmq`, `nats`, `redis`, `webhook`, …): bounded. */
  readonly sink: string;
  readonly outcome: RelayOutcome;
  /** send() → the broker's confirm (or the failure). */
  readonly confirmSeconds: number;
  /** The row's commit (created_at) → the broker's confirm, by this process's clock. Only when confirmed. */
  readonly lagSeconds?: number;
  readonly exceptionType?: string;
}

/**
 * The rows a relay started sending in one event-loop turn (a claim's worth, usually), once every
 * send of them settled: how batching went, per sink and queue.
 */
export interface RelayBatchEvent {
  readonly type: 'relay_batch';
  readonly queue: string;
  readonly subscriber: string;
  readonly sink: string;
  readonly messages: number;
  readonly confirmed: number;
  readonly refused: number;
  readonly failed: number;
  /** First send started → last send settled. */
  readonly durationSeconds: number;
}

export type OutboxEvent =
  | FetchedEvent
  | DispatchedEvent
  | AckedEvent
  | NackedRetriedEvent
  | NackedTerminalEvent
  | LeaseLostEvent
  | DlqWrittenEvent
  | DrainTimeoutEvent
  | PublishedEvent
  | RelayedEvent
  | RelayBatchEvent;

/**
 * Receives every event, synchronously, on the delivery path: it must not block (a counter
 * increment is fine; a network call is not). A recorder that throws is caught and logged at debug
 * level; delivery goes on (DESIGN invariant 5).
 */
export interface Recorder {
  (event: OutboxEvent): void;
  /**
   * The event types this recorder reads, when it reads only some: an event no recorder reads is
   * then not even built (per message on the drain path: `acked` for prometheusRecorder, which
   * leaves acks to the middleware). Absent: every type. Events of other types may still reach it
   * when another recorder of the Outbox reads them, so it must ignore what it did not ask for.
   */
  readonly readingOnly?: readonly OutboxEvent['type'][];
}

/** The class name of a thrown value, for `exceptionType`: bounded, never the message. */
export function exceptionTypeOf(error: unknown): string {
  if (error instanceof Error) return error.constructor.name || error.name || 'Error';
  return typeof error;
}
