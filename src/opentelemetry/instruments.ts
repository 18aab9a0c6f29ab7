import type { Counter, Histogram, Meter } from '@opentelemetry/api';

import { AGE_BUCKETS, BATCH_BUCKETS, DURATION_BUCKETS } from '../prometheus/buckets.js';

/**
 * Histogram boundaries, passed as advice so the SDK uses them without a View. Without advice the
 * SDK's default boundaries (0, 5, 10, 25, … 10000) apply, made for milliseconds: every sub-5 s
 * duration lands in one bucket (ecosystem.md §3: FastStream's telemetry middleware has this bug).
 * A View the application registers still wins over advice.
 *
 * Durations: semconv's advice for the messaging duration metrics, which is also prometheus_client's
 * default list that FastStream and prometheusMiddleware use, so both exports bucket alike.
 */
export const OTEL_DURATION_BUCKETS: readonly number[] = DURATION_BUCKETS;
/** Message age (created → dispatched): the same list as `<prefix>_message_age_seconds`. */
export const OTEL_AGE_BUCKETS: readonly number[] = AGE_BUCKETS;
/** Rows per relay batch: the same list as `<prefix>_outbox_relay_batch_messages`. */
export const OTEL_BATCH_BUCKETS: readonly number[] = BATCH_BUCKETS;

export interface Instruments {
  readonly clientOperationDuration: Histogram;
  readonly processDuration: Histogram;
  readonly sentMessages: Counter;
  readonly consumedMessages: Counter;
  readonly fetches: Counter;
  readonly retries: Counter;
  readonly terminal: Counter;
  readonly leaseLost: Counter;
  readonly dlqWritten: Counter;
  readonly drainTimeouts: Counter;
  readonly messageAge: Histogram;
  readonly relayMessages: Counter;
  readonly relaySendDuration: Histogram;
  readonly relayLag: Histogram;
  readonly relayBatchMessages: Histogram;
  readonly relayBatchDuration: Histogram;
}

function counter(meter: Meter, name: string, description: string, unit: string): Counter {
  return meter.createCounter(name, { description, unit });
}

function seconds(meter: Meter, name: string, description: string, boundaries: readonly number[]): Histogram {
  return distribution(meter, name, description, 's', boundaries);
}

function distribution(meter: Meter, name: string, description: string, unit: string, boundaries: readonly number[]): Histogram {
  return meter.createHistogram(name, { description, unit, advice: { explicitBucketBoundaries: [...boundaries] } });
}

/**
 * The semconv instruments first, then the outbox's own under `messaging.outbox.*` (named like the
 * Prometheus recorder's `<prefix>_outbox_*` series, so a Prometheus exporter of these reads alike).
 */
export function createInstruments(meter: Meter): Instruments {
  return {
    clientOperationDuration: seconds(
      meter,
      'messaging.client.operation.duration',
      'Duration of a publish call (INSERT into the outbox table, inside the caller transaction)',
      OTEL_DURATION_BUCKETS,
    ),
    processDuration: seconds(meter, 'messaging.process.duration', 'Duration of a handler run', OTEL_DURATION_BUCKETS),
    sentMessages: counter(
      meter,
      'messaging.client.sent.messages',
      'Messages inserted into the outbox table by publish calls',
      '{message}',
    ),
    consumedMessages: counter(
      meter,
      'messaging.client.consumed.messages',
      'Rows claimed by subscribers (delivered to the application, or ended by maxDeliveries)',
      '{message}',
    ),
    fetches: counter(meter, 'messaging.outbox.fetches', 'Claim queries run, by whether they returned rows', '{fetch}'),
    retries: counter(meter, 'messaging.outbox.retries', 'Retries scheduled', '{message}'),
    terminal: counter(
      meter,
      'messaging.outbox.terminal',
      'Rows ended without an ack, by reason (rejected, retry_terminal, max_deliveries)',
      '{message}',
    ),
    leaseLost: counter(
      meter,
      'messaging.outbox.lease_lost',
      'Outcome writes that found the lease taken over: raise leaseTtlMs above handler P99',
      '{write}',
    ),
    dlqWritten: counter(
      meter,
      'messaging.outbox.dlq_written',
      'Rows moved to the dead-letter table, by failure reason',
      '{message}',
    ),
    drainTimeouts: counter(
      meter,
      'messaging.outbox.drain_timeouts',
      'Shutdowns that abandoned running handlers after gracefulTimeoutMs (their rows are redelivered)',
      '{shutdown}',
    ),
    messageAge: seconds(
      meter,
      'messaging.outbox.message.age',
      'Time from publish (created_at) to dispatch to a handler',
      OTEL_AGE_BUCKETS,
    ),
    relayMessages: counter(
      meter,
      'messaging.outbox.relay.messages',
      'Rows a relay sent, by outcome: confirmed by the broker (row deleted), refused (row ended into the DLQ), failed (row retried)',
      '{message}',
    ),
    relaySendDuration: seconds(
      meter,
      'messaging.outbox.relay.send.duration',
      "Time from a relay's send to the broker's confirm (outcome confirmed), refusal or the failure",
      OTEL_DURATION_BUCKETS,
    ),
    relayLag: seconds(
      meter,
      'messaging.outbox.relay.lag',
      "Time from a row's publish (created_at) to the broker's confirm, confirmed rows only",
      OTEL_AGE_BUCKETS,
    ),
    relayBatchMessages: distribution(
      meter,
      'messaging.outbox.relay.batch.messages',
      'Rows per relay batch (the sends a relay started in one event-loop turn)',
      '{message}',
      OTEL_BATCH_BUCKETS,
    ),
    relayBatchDuration: seconds(
      meter,
      'messaging.outbox.relay.batch.duration',
      "Time from a relay batch's first send to its last settled send",
      OTEL_DURATION_BUCKETS,
    ),
  };
}
