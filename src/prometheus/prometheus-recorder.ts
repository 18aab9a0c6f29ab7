import type { OutboxEvent, Recorder } from '../instrumentation/events.js';
import { Memo } from '../util/memo.js';
import { AGE_BUCKETS } from './buckets.js';
import { BROKER } from './labels.js';
import { type PrometheusBaseOptions, resolveBaseOptions } from './options.js';
import { allOrNothing, counter, histogram } from './registered-metrics.js';
import { relayMetrics, RelaySeries } from './relay-metrics.js';
import { CounterSeries, HistogramSeries } from './series.js';

export type PrometheusRecorderOptions = PrometheusBaseOptions;

const KNOWN = ['registry', 'prefix', 'appName'];
const MESSAGE = ['app_name', 'broker', 'handler', 'queue'] as const;

interface QueueSeries {
  readonly labels: { app_name: string; broker: string; handler: string; queue: string };
  readonly age: HistogramSeries;
  readonly retries: CounterSeries;
  readonly fetched: CounterSeries;
  readonly fetchesEmpty: CounterSeries;
  readonly fetchesNonEmpty: CounterSeries;
  /** By sink name: a relay's series (relay-metrics.ts). */
  readonly relay: Memo<string, RelaySeries>;
}

/**
 * The recorder seam's Prometheus series: what happened inside the outbox, as the database saw it —
 * fetches (empty ones too), lost leases, terminal reasons, retries, DLQ moves, drain timeouts,
 * message age, and what relays did with the broker (relay-metrics.ts).
 *
 * Every name is `<prefix>_outbox_*` (relays: `<prefix>_outbox_relay_*`) or `<prefix>_message_age_seconds`, never one of
 * prometheusMiddleware's, so both seams share one registry without a duplicate-registration error
 * (FastStream's recorder and middleware collide there, faststream-outbox §4) and nothing is counted
 * twice. For the same reason `acked`, `published` and the per-delivery side of `dispatched` and
 * the nacks (received/processed counts, durations, exception types) are left to the middleware,
 * which sees every delivery and publish call with its status; this recorder adds what no
 * message-scoped hook can see, or sees differently: `nacked_retried` / `nacked_terminal` here
 * count retry and terminal writes that landed, not handler statuses.
 *
 * Events this version does not know are ignored, so an Outbox that reports more does not break it.
 */
export function prometheusRecorder(options: PrometheusRecorderOptions): Recorder {
  const { base } = resolveBaseOptions(options, 'prometheusRecorder', KNOWN);
  const { registry, prefix: p, appName } = base;

  const m = allOrNothing(registry, () => ({
    fetches: counter(registry, {
      name: `${p}_outbox_fetches_total`,
      help: 'Claim queries run, by whether they returned rows (non_empty)',
      labelNames: [...MESSAGE, 'non_empty'],
    }),
    fetched: counter(registry, { name: `${p}_outbox_fetched_messages_total`, help: 'Rows claimed', labelNames: MESSAGE }),
    leaseLost: counter(registry, {
      name: `${p}_outbox_lease_lost_total`,
      help: 'Outcome writes that found the lease taken over (terminal or retry phase): raise leaseTtlMs above handler P99',
      labelNames: [...MESSAGE, 'phase'],
    }),
    terminal: counter(registry, {
      name: `${p}_outbox_terminal_total`,
      help: 'Rows ended without an ack, by reason (rejected, retry_terminal, max_deliveries)',
      labelNames: [...MESSAGE, 'reason'],
    }),
    retries: counter(registry, { name: `${p}_outbox_retries_total`, help: 'Retries scheduled', labelNames: MESSAGE }),
    dlqWritten: counter(registry, {
      name: `${p}_outbox_dlq_written_total`,
      help: 'Rows moved to the dead-letter table, by failure reason',
      labelNames: [...MESSAGE, 'reason'],
    }),
    drainTimeouts: counter(registry, {
      name: `${p}_outbox_drain_timeouts_total`,
      help: 'Shutdowns that abandoned running handlers after gracefulTimeoutMs (their rows are redelivered)',
      labelNames: ['app_name', 'broker', 'handler'],
    }),
    age: histogram(registry, {
      name: `${p}_message_age_seconds`,
      help: 'Time from publish (created_at) to dispatch to a handler, in seconds',
      labelNames: MESSAGE,
      buckets: AGE_BUCKETS,
    }),
    relay: relayMetrics(registry, p, MESSAGE),
  }));

  // Series per (subscriber, queue), made on first use (series.ts: no label hashing per event). The
  // per-message ones (age, retries) and the fetch counters are kept; the rare ones with an extra
  // label (terminal reason, phase) go through prom-client as they come.
  const bySubscriber = new Memo(
    (subscriber: string) =>
      new Memo((queue: string): QueueSeries => {
        const labels = { app_name: appName, broker: BROKER, handler: subscriber, queue };
        return {
          labels,
          age: new HistogramSeries(m.age, labels),
          retries: new CounterSeries(m.retries, labels),
          fetched: new CounterSeries(m.fetched, labels),
          fetchesEmpty: new CounterSeries(m.fetches, { ...labels, non_empty: 'false' }),
          fetchesNonEmpty: new CounterSeries(m.fetches, { ...labels, non_empty: 'true' }),
          relay: new Memo((sink: string) => new RelaySeries(m.relay, { ...labels, sink })),
        };
      }),
  );
  const seriesOf = (event: { subscriber: string; queue: string }): QueueSeries =>
    bySubscriber.get(event.subscriber).get(event.queue);
  const labelsOf = (event: { subscriber: string; queue: string }) => seriesOf(event).labels;

  const record = (event: OutboxEvent): void => {
    switch (event.type) {
      case 'fetched': {
        const series = seriesOf(event);
        (event.count > 0 ? series.fetchesNonEmpty : series.fetchesEmpty).inc(1);
        series.fetched.inc(event.count);
        return;
      }
      case 'dispatched':
        // NaN only from an unreadable created_at; prom-client would throw on it (deliver clamps at 0).
        if (Number.isFinite(event.ageSeconds)) seriesOf(event).age.observe(event.ageSeconds);
        return;
      case 'nacked_retried':
        seriesOf(event).retries.inc(1);
        return;
      case 'nacked_terminal':
        m.terminal.inc({ ...labelsOf(event), reason: event.reason });
        return;
      case 'lease_lost':
        m.leaseLost.inc({ ...labelsOf(event), phase: event.phase });
        return;
      case 'dlq_written':
        m.dlqWritten.inc({ ...labelsOf(event), reason: event.failureReason });
        return;
      case 'drain_timeout':
        m.drainTimeouts.inc({ app_name: appName, broker: BROKER, handler: event.subscriber });
        return;
      case 'relayed':
        seriesOf(event).relay.get(event.sink).relayed(event);
        return;
      case 'relay_batch':
        seriesOf(event).relay.get(event.sink).batch(event);
        return;
      case 'acked':
      case 'published':
        return; // the middleware's (see above)
      default:
        return; // an event type added after this version
    }
  };
  // `acked` and `published` are the middleware's: the Outbox need not build them for this recorder.
  return Object.assign(record, { readingOnly: READS });
}

/** The event types prometheusRecorder reads (Recorder.readingOnly). */
const READS: readonly OutboxEvent['type'][] = Object.freeze([
  'fetched',
  'dispatched',
  'nacked_retried',
  'nacked_terminal',
  'lease_lost',
  'dlq_written',
  'drain_timeout',
  'relayed',
  'relay_batch',
]);
