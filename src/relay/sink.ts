/**
 * What a relay hands to a broker, and the contract a sink keeps (architecture/relay.md).
 *
 * A sink is deliberately small: `send` one message and resolve only once the broker confirmed it
 * (a publisher confirm, a JetStream ack, an XADD reply, a 2xx). The relay runs up to `concurrency`
 * sends at once, so a sink that batches (one flush per event-loop turn, one confirm wait per
 * batch) gets its batches from concurrent sends; a sink that cannot batch still pipelines.
 * Everything else — claiming, leases, retries with backoff, the DLQ, ordering per key, metrics —
 * is the relay's, so a new broker (Kafka: architecture/relay.md says what it needs) is one module.
 */

/** One outbox row on its way to a broker. Nothing is decoded: the stored bytes go out as they are. */
export interface RelayMessage {
  /**
   * Stable for the row's whole life, across redeliveries, relay restarts and failovers, and unique
   * across databases: `<table>:<source>:<row id>`, the source being 12 hex digits of a hash of the
   * cluster's system identifier, the database's OID and the table's OID (relay/source-id.ts).
   * Brokers that deduplicate (JetStream's Nats-Msg-Id) and consumers that do (the entry's id field
   * in a Redis stream, a webhook's Idempotency-Key) use it. A DLQ redrive is a new row: a new id.
   */
  readonly messageId: string;
  /** The outbox row id (a bigint, as a string). */
  readonly id: string;
  readonly queue: string;
  /** The row's ordering key, if it was published with one: the relay sends a key's rows one at a time, in order. */
  readonly orderingKey: string | null;
  /** The stored body, as published. Its `content-type` header says how to read it. */
  readonly payload: Buffer;
  /**
   * The row's headers as stored: `content-type`, `correlation-id`, W3C `traceparent`/`tracestate`
   * when the publisher was traced, and the user's own. Sinks send them all.
   */
  readonly headers: Readonly<Record<string, string>>;
  readonly correlationId: string;
  /** When the row was committed (the insert's now()): commit-to-broker lag is measured from it. */
  readonly createdAt: Date;
  /** Claims of this row so far, this one included: more than 1 means the broker may already have it. */
  readonly deliveriesCount: number;
}

/** Why the relay is sending: aborted when the relay stops waiting for this send (stop(), a lost lease). */
export interface SendContext {
  readonly signal: AbortSignal;
}

/**
 * A sink: the broker side of a relay. Implementations throw `SinkRefusedError` for a permanent
 * refusal (the row ends in the DLQ with the reason) and anything else for a failure worth retrying
 * (the row is retried with the relay's strategy; it stays in the table meanwhile).
 */
export interface RelaySink {
  /** Names the sink in metrics, events and logs (`rabbitmq`, `nats`, `redis`, `webhook`, or your own). Bounded. */
  readonly name: string;
  /**
   * Sends one message; resolves once the broker confirmed it, rejects otherwise. Called with up to
   * the relay's concurrency sends in flight; the relay never sends two rows of one ordering key at once.
   */
  send(message: RelayMessage, context: SendContext): Promise<void>;
  /**
   * Whether the broker is reachable now, for `ping()` and the runner's /readyz. Never throws; bounded
   * by the sink itself. Optional: without it the sink counts as up while its sends succeed.
   */
  check?(): Promise<boolean>;
  /** Closes the broker connection; bounded. Called once, by the relay's stop(), after the last send settled or was abandoned. */
  close(): Promise<void>;
}
