/**
 * Attribute names and values, from the OpenTelemetry messaging semantic conventions (semconv
 * 1.45, still "development" status). Written out here rather than imported from
 * `@opentelemetry/semantic-conventions`: `@opentelemetry/api` is the only peer dependency
 * (DESIGN.md §5), and the incubating entry point of that package changes between minors.
 *
 * `messaging.outbox.*` are this library's own, named like faststream-outbox's (`messaging.system`
 * is "outbox" there too, so a dashboard built on one reads the other).
 */

/** The instrumentation scope (tracer and meter name) of every span and instrument of this package. */
export const INSTRUMENTATION_SCOPE = 'txoutbox';

/** `messaging.system`: FastStream's BROKER_SYSTEM for the outbox, like the Prometheus `broker` label. */
export const MESSAGING_SYSTEM = 'outbox';

export const ATTR = {
  system: 'messaging.system',
  operationType: 'messaging.operation.type',
  operationName: 'messaging.operation.name',
  destination: 'messaging.destination.name',
  messageId: 'messaging.message.id',
  conversationId: 'messaging.message.conversation_id',
  bodySize: 'messaging.message.body.size',
  batchCount: 'messaging.batch.message_count',
  errorType: 'error.type',
  /** The subscriber's name (`subscribe(…, { name })`): bounded by the code base. */
  subscriber: 'messaging.outbox.subscriber',
  /** Deliveries of this row so far, this one included. */
  deliveryCount: 'messaging.outbox.delivery_count',
  /** How the handler ended: acked | nacked | rejected | error. */
  status: 'messaging.outbox.status',
  /** What txoutbox writes next: ack | retry | terminal. */
  outcome: 'messaging.outbox.outcome',
  /** The retry's delay, in milliseconds (outcome retry). */
  retryDelayMs: 'messaging.outbox.retry.delay_ms',
  /** max_deliveries | retry_terminal | rejected (outcome terminal, terminal counter). */
  terminalReason: 'messaging.outbox.terminal.reason',
  /** Rows a publish call inserted (0 when its timerId was already live). */
  inserted: 'messaging.outbox.inserted',
  /** terminal | retry: which fenced write found its lease taken over. */
  leasePhase: 'messaging.outbox.lease.phase',
  /** "true" when a claim returned rows. */
  nonEmpty: 'messaging.outbox.fetch.non_empty',
  /** The relay sink's name (`rabbitmq`, `nats`, `redis`, `webhook`, …): bounded by the code base. */
  relaySink: 'messaging.outbox.relay.sink',
  /** What the broker did with a relayed row: confirmed | refused | failed. */
  relayOutcome: 'messaging.outbox.relay.outcome',
} as const;

/**
 * `messaging.operation.type` values. The producer's is `send`: semconv renamed `publish` to `send`
 * (the old value is deprecated), in the same release as the `messaging.client.sent.messages`
 * metric the recorder emits. The operation *name* stays `publish`, txoutbox's own verb, and names
 * the span (`{operation name} {destination}`).
 */
export const OPERATION = {
  send: { type: 'send', name: 'publish' },
  process: { type: 'process', name: 'process' },
  receive: { type: 'receive', name: 'fetch' },
} as const;
