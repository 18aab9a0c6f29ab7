import type { Counter, Histogram } from 'prom-client';

import type { RelayBatchEvent, RelayedEvent } from '../instrumentation/events.js';
import { Memo } from '../util/memo.js';
import { AGE_BUCKETS, BATCH_BUCKETS, DURATION_BUCKETS } from './buckets.js';
import type { AnyRegistry } from './options.js';
import { counter, histogram } from './registered-metrics.js';
import { CounterSeries, HistogramSeries } from './series.js';

/**
 * The relay's series (outbox.relay; architecture/metrics.md#relay): what the subscription-level
 * series cannot tell — which broker, whether it confirmed, refused or failed, how long a confirm
 * takes, how late a row reaches the broker, and how sends batch. Names are `<prefix>_outbox_relay_*`,
 * like every recorder series (`<prefix>_outbox_*`), so they never meet prometheusMiddleware's.
 * The per-row outcome is the relay's own: the middleware's `received_processed_messages_total`
 * counts the same runs as handler statuses (`acked` / `rejected` / `error`), without the sink.
 */
export interface RelayMetrics {
  readonly messages: Counter;
  readonly sendDuration: Histogram;
  readonly lag: Histogram;
  readonly batchMessages: Histogram;
  readonly batchDuration: Histogram;
}

/** `queueLabels`: the recorder's per-queue labels (app_name, broker, handler, queue), `sink` added. */
export function relayMetrics(registry: AnyRegistry, prefix: string, queueLabels: readonly string[]): RelayMetrics {
  const labelNames = [...queueLabels, 'sink'];
  return {
    messages: counter(registry, {
      name: `${prefix}_outbox_relay_messages_total`,
      help: 'Rows a relay sent, by outcome: confirmed by the broker (row deleted), refused (row ended into the DLQ), failed (row retried)',
      labelNames: [...labelNames, 'outcome'],
    }),
    sendDuration: histogram(registry, {
      name: `${prefix}_outbox_relay_send_duration_seconds`,
      help: "Time from a relay's send to the broker's confirm (outcome confirmed), refusal or the failure, in seconds",
      labelNames: [...labelNames, 'outcome'],
      buckets: DURATION_BUCKETS,
    }),
    lag: histogram(registry, {
      name: `${prefix}_outbox_relay_lag_seconds`,
      help: "Time from a row's publish (created_at) to the broker's confirm, confirmed rows only, in seconds",
      labelNames,
      buckets: AGE_BUCKETS,
    }),
    batchMessages: histogram(registry, {
      name: `${prefix}_outbox_relay_batch_messages`,
      help: 'Rows per relay batch (the sends a relay started in one event-loop turn)',
      labelNames,
      buckets: BATCH_BUCKETS,
    }),
    batchDuration: histogram(registry, {
      name: `${prefix}_outbox_relay_batch_duration_seconds`,
      help: "Time from a relay batch's first send to its last settled send, in seconds",
      labelNames,
      buckets: DURATION_BUCKETS,
    }),
  };
}

type Labels = Readonly<Record<string, string>>;

interface OutcomeSeries {
  readonly messages: CounterSeries;
  readonly sendDuration: HistogramSeries;
}

/**
 * The relay series of one (subscriber, queue, sink), made on first use and kept (series.ts: no
 * label hashing per row). An outcome gets its series at its first row, like every labelled series
 * here.
 */
export class RelaySeries {
  readonly #byOutcome: Memo<string, OutcomeSeries>;
  readonly #lag: HistogramSeries;
  readonly #batchMessages: HistogramSeries;
  readonly #batchDuration: HistogramSeries;

  constructor(m: RelayMetrics, labels: Labels) {
    this.#byOutcome = new Memo((outcome: string) => {
      const withOutcome = { ...labels, outcome };
      return {
        messages: new CounterSeries(m.messages, withOutcome),
        sendDuration: new HistogramSeries(m.sendDuration, withOutcome),
      };
    });
    this.#lag = new HistogramSeries(m.lag, labels);
    this.#batchMessages = new HistogramSeries(m.batchMessages, labels);
    this.#batchDuration = new HistogramSeries(m.batchDuration, labels);
  }

  relayed(event: RelayedEvent): void {
    const series = this.#byOutcome.get(event.outcome);
    series.messages.inc(1);
    // Non-finite values only from a broken clock; prom-client would throw on NaN.
    if (Number.isFinite(event.confirmSeconds)) series.sendDuration.observe(event.confirmSeconds);
    if (event.outcome === 'confirmed' && event.lagSeconds !== undefined && Number.isFinite(event.lagSeconds)) {
      this.#lag.observe(event.lagSeconds);
    }
  }

  batch(event: RelayBatchEvent): void {
    this.#batchMessages.observe(event.messages);
    if (Number.isFinite(event.durationSeconds)) this.#batchDuration.observe(event.durationSeconds);
  }
}
