/**
 * Relay metrics (architecture/metrics.md#relay): the `relayed` and `relay_batch` events of a real
 * relay — outbox.relay() with the real webhook sink against a real HTTP server — mapped by the
 * Prometheus recorder, the OpenTelemetry recorder and the statsd recorder, each compared with the
 * events the relay reported. The exposition goes through the real `promtool check metrics`.
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';

import {
  DataPointType,
  type HistogramMetricData,
  MeterProvider,
  type MetricData,
  MetricReader,
} from '@opentelemetry/sdk-metrics';
import { Registry } from 'prom-client';

import { ConstantRetry, type OutboxEvent, type RelaySink } from '../../src/index.js';
import { INSTRUMENTATION_SCOPE, openTelemetryRecorder, OTEL_BATCH_BUCKETS } from '../../src/opentelemetry/index.js';
import { BATCH_BUCKETS, prometheusMiddleware, prometheusRecorder } from '../../src/prometheus/index.js';
import { webhookSink } from '../../src/relay/index.js';
import { shortHostname, StatsdClient, statsdRecorder } from '../../src/statsd/index.js';
import { useTestDatabase } from '../support/database.js';
import { EventLog } from '../support/events.js';
import { outboxFactory } from '../support/outboxes.js';
import { checkMetrics, promtool } from '../support/promtool.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { waitFor } from '../support/wait-for.js';
import { WebhookReceiver } from '../support/webhook-receiver.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

let receiver: WebhookReceiver;
const statsd = createSocket('udp4');
const lines: string[] = [];
statsd.on('message', (datagram) => {
  lines.push(...datagram.toString('utf8').split('\n').filter(Boolean));
});
before(async () => {
  receiver = await WebhookReceiver.start();
  await new Promise<void>((resolve) => statsd.bind(0, '127.0.0.1', resolve));
});
after(async () => {
  await receiver.stop();
  statsd.close();
});

type Labels = Record<string, string>;
/** As prom-client gives them: a bucket bound is a number. */
type RawLabels = Record<string, string | number>;

/** A pull reader: collect() on demand, as a Prometheus exporter does at scrape time. */
class TestReader extends MetricReader {
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

function meters() {
  const reader = new TestReader();
  const provider = new MeterProvider({ readers: [reader] });
  const collect = async (): Promise<Map<string, MetricData>> => {
    const { resourceMetrics } = await reader.collect();
    const scope = resourceMetrics.scopeMetrics.find((s) => s.scope.name === INSTRUMENTATION_SCOPE);
    return new Map((scope?.metrics ?? []).map((metric) => [metric.descriptor.name, metric]));
  };
  return { provider, collect };
}

/** Data points of `name` whose attributes include `where`. */
function points(all: Map<string, MetricData>, name: string, where: Record<string, string>) {
  const metric = all.get(name);
  assert.ok(metric !== undefined, `${name} recorded`);
  return metric.dataPoints.filter((point) => Object.entries(where).every(([key, value]) => point.attributes[key] === value));
}

function counted(all: Map<string, MetricData>, name: string, where: Record<string, string>): number {
  assert.equal(all.get(name)?.dataPointType, DataPointType.SUM, name);
  return points(all, name, where).reduce((sum, point) => sum + (point.value as number), 0);
}

function distribution(all: Map<string, MetricData>, name: string, where: Record<string, string>) {
  const metric = all.get(name) as HistogramMetricData | undefined;
  assert.equal(metric?.dataPointType, DataPointType.HISTOGRAM, name);
  const found = points(all, name, where) as HistogramMetricData['dataPoints'];
  return {
    count: found.reduce((n, p) => n + p.value.count, 0),
    sum: found.reduce((n, p) => n + (p.value.sum ?? 0), 0),
    boundaries: found[0]?.value.buckets.boundaries,
    unit: metric.descriptor.unit,
  };
}

/** The value of the sample `sample` (e.g. `x_count` of histogram x) with exactly `labels`. */
async function value(registry: Registry, sample: string, labels: Labels): Promise<number | undefined> {
  for (const metric of await registry.getMetricsAsJSON()) {
    for (const entry of metric.values as { value: number; labels: RawLabels; metricName?: string }[]) {
      // Bucket bounds come as numbers (`le: 1`), but '+Inf' as a string: compare as text.
      const asText = Object.fromEntries(Object.entries(entry.labels).map(([k, v]) => [k, String(v)]));
      if ((entry.metricName ?? metric.name) === sample && isDeepStrictEqual(asText, labels)) return entry.value;
    }
  }
  return undefined;
}

/** Every sample of the family `name`, as `labels → value`, sorted by labels. */
async function samples(registry: Registry, name: string): Promise<{ labels: Labels; value: number }[]> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  assert.ok(metric !== undefined, `${name} is registered`);
  return (metric.values as { value: number; labels: Labels }[])
    .map(({ labels, value }) => ({ labels, value }))
    .sort((a, b) => JSON.stringify(a.labels).localeCompare(JSON.stringify(b.labels)));
}

const sum = (values: readonly number[]): number => values.reduce((total, v) => total + v, 0);
const close = (actual: number | undefined, expected: number, what: string): void => {
  assert.ok(actual !== undefined && Math.abs(actual - expected) < 1e-9, `${what}: ${actual} ≠ ${expected}`);
};

describe('relay metrics', () => {
  test('a real relay through Prometheus, OpenTelemetry and statsd: outcomes, send time, lag and batches per sink', async (t) => {
    const registry = new Registry();
    const log = new EventLog();
    const otel = meters();
    const client = new StatsdClient(
      { host: '127.0.0.1', port: statsd.address().port, prefix: 'shop' },
      'relays',
      newOutbox.logger,
    );
    const table = 'rm_outbox';
    const outbox = newOutbox({
      pool: db.pool,
      table,
      recorder: [
        log.recorder,
        prometheusRecorder({ registry }),
        openTelemetryRecorder({ meterProvider: otel.provider }),
        statsdRecorder(client),
      ],
      middlewares: [prometheusMiddleware({ registry })],
    });
    await outbox.migrate();
    // The broker: 422 refuses "poison" for good, 503 fails "flaky" once (a retry), the rest is taken.
    let flaky = 1;
    receiver.answer = (request, response) => {
      const body = request.body.toString();
      if (body.includes('poison')) response.writeHead(422).end('no');
      else if (body.includes('flaky') && flaky-- > 0) response.writeHead(503).end('later');
      else response.writeHead(204).end();
    };
    const retry = { ...FAST_POLL, retry: new ConstantRetry({ delayMs: 10 }) };
    outbox.relay('orders', webhookSink({ url: receiver.url('/orders') }), retry);
    // A second relay with a sink of its own name (a '.' in it, which statsd must not nest on).
    const inner = webhookSink({ url: receiver.url('/audit') });
    const audit: RelaySink = { name: 'audit.hook', send: (m, c) => inner.send(m, c), close: () => inner.close() };
    outbox.relay('audit', audit, retry);
    outbox.start();
    const ids = [
      ...(await publishCommitted(outbox, db.pool, 'orders', [
        ...Array.from({ length: 6 }, (_, n) => ({ n })),
        'poison',
        'flaky',
      ])),
      ...(await publishCommitted(outbox, db.pool, 'audit', ['a', 'b', 'c'])),
    ];
    await waitFor(async () => (await remaining(db.pool, 'orders', table)) + (await remaining(db.pool, 'audit', table)) === 0, {
      what: 'every row relayed',
    });
    // 8 + 3 rows, plus the failed first send of "flaky"; every send's batch reported.
    await log.waitFor('relayed', 12);
    await waitFor(() => sum(log.of('relay_batch').map((e) => e.messages)) === 12, { what: 'every batch reported' });
    await outbox.stop(); // no event after this: the log and the metrics can be compared exactly

    const relayed = log.of('relayed');
    const batches = log.of('relay_batch');
    const relays = [
      { handler: 'relay:webhook', queue: 'orders', sink: 'webhook', outcomes: { confirmed: 7, refused: 1, failed: 1 } },
      { handler: 'relay:audit.hook', queue: 'audit', sink: 'audit.hook', outcomes: { confirmed: 3, refused: 0, failed: 0 } },
    ];
    for (const relay of relays) {
      for (const [outcome, n] of Object.entries(relay.outcomes)) {
        assert.equal(relayed.filter((e) => e.sink === relay.sink && e.outcome === outcome).length, n, `${relay.sink} ${outcome}`);
      }
    }

    // Prometheus: one series per (handler, queue, sink[, outcome]), each equal to the events.
    const messages = await samples(registry, 'txoutbox_outbox_relay_messages_total');
    assert.deepEqual(
      messages,
      relays
        .flatMap((relay) =>
          Object.entries(relay.outcomes)
            .filter(([, n]) => n > 0)
            .map(([outcome, n]) => ({
              labels: {
                app_name: 'txoutbox',
                broker: 'outbox',
                handler: relay.handler,
                queue: relay.queue,
                sink: relay.sink,
                outcome,
              },
              value: n,
            })),
        )
        .sort((a, b) => JSON.stringify(a.labels).localeCompare(JSON.stringify(b.labels))),
    );
    for (const relay of relays) {
      const labels = { app_name: 'txoutbox', broker: 'outbox', handler: relay.handler, queue: relay.queue, sink: relay.sink };
      const mine = relayed.filter((e) => e.sink === relay.sink);
      for (const outcome of ['confirmed', 'refused', 'failed'] as const) {
        const of = mine.filter((e) => e.outcome === outcome);
        const withOutcome = { ...labels, outcome };
        const count = await value(registry, 'txoutbox_outbox_relay_send_duration_seconds_count', withOutcome);
        assert.equal(count ?? 0, of.length, `${relay.sink} ${outcome} send durations`);
        if (of.length > 0) {
          close(
            await value(registry, 'txoutbox_outbox_relay_send_duration_seconds_sum', withOutcome),
            sum(of.map((e) => e.confirmSeconds)),
            `${relay.sink} ${outcome} send duration sum`,
          );
        }
      }
      const confirmed = mine.filter((e) => e.outcome === 'confirmed');
      assert.ok(
        confirmed.every((e) => e.lagSeconds !== undefined && e.lagSeconds >= 0),
        'every confirmed row has its lag',
      );
      assert.ok(
        mine.every((e) => e.outcome === 'confirmed' || e.lagSeconds === undefined),
        'no lag without a confirm',
      );
      assert.equal(await value(registry, 'txoutbox_outbox_relay_lag_seconds_count', labels), confirmed.length);
      close(
        await value(registry, 'txoutbox_outbox_relay_lag_seconds_sum', labels),
        sum(confirmed.map((e) => e.lagSeconds ?? 0)),
        `${relay.sink} lag sum`,
      );
      const myBatches = batches.filter((e) => e.sink === relay.sink);
      assert.ok(myBatches.length >= 1);
      assert.equal(await value(registry, 'txoutbox_outbox_relay_batch_messages_count', labels), myBatches.length);
      assert.equal(await value(registry, 'txoutbox_outbox_relay_batch_messages_sum', labels), mine.length);
      assert.equal(await value(registry, 'txoutbox_outbox_relay_batch_duration_seconds_count', labels), myBatches.length);
      close(
        await value(registry, 'txoutbox_outbox_relay_batch_duration_seconds_sum', labels),
        sum(myBatches.map((e) => e.durationSeconds)),
        `${relay.sink} batch duration sum`,
      );
      // Bucket bounds are the documented constant: a batch of n rows lands in le >= n.
      const largest = Math.max(...myBatches.map((e) => e.messages));
      const bound = BATCH_BUCKETS.find((b) => b >= largest) ?? Number.POSITIVE_INFINITY;
      assert.equal(
        await value(registry, 'txoutbox_outbox_relay_batch_messages_bucket', {
          ...labels,
          le: bound === Infinity ? '+Inf' : String(bound),
        }),
        myBatches.length,
      );
    }
    // The same runs in the middleware's consume series (metrics.md#relay says how they line up).
    assert.deepEqual(
      (await samples(registry, 'txoutbox_received_processed_messages_total')).filter((e) => e.labels.handler === 'relay:webhook'),
      [
        { labels: { app_name: 'txoutbox', broker: 'outbox', handler: 'relay:webhook', status: 'acked' }, value: 7 },
        // Refused and failed alike: the handler threw. Only the relay series tell them apart.
        { labels: { app_name: 'txoutbox', broker: 'outbox', handler: 'relay:webhook', status: 'error' }, value: 2 },
      ],
    );
    const text = await registry.metrics();
    assert.match(text, /^# TYPE txoutbox_outbox_relay_messages_total counter$/m);
    for (const name of ['send_duration_seconds', 'lag_seconds', 'batch_messages', 'batch_duration_seconds']) {
      assert.match(text, new RegExp(`^# TYPE txoutbox_outbox_relay_${name} histogram$`, 'm'), name);
    }
    const messageIds = relayed.map((e) => e.messageId);
    const labelValues = new Set([...text.matchAll(/([a-z_]+)="([^"]*)"/g)].filter((m) => m[1] !== 'le').map((m) => m[2]));
    for (const id of [...ids, ...messageIds, `${table}:${ids[0]}`]) assert.ok(!labelValues.has(id), `no label holds ${id}`);

    // OpenTelemetry: the same numbers, attributes bounded.
    const all = await otel.collect();
    for (const relay of relays) {
      const where = { 'messaging.outbox.subscriber': relay.handler, 'messaging.outbox.relay.sink': relay.sink };
      for (const [outcome, n] of Object.entries(relay.outcomes)) {
        const withOutcome = { ...where, 'messaging.outbox.relay.outcome': outcome };
        if (n > 0) assert.equal(counted(all, 'messaging.outbox.relay.messages', withOutcome), n, `${relay.sink} ${outcome}`);
        if (n > 0) assert.equal(distribution(all, 'messaging.outbox.relay.send.duration', withOutcome).count, n);
      }
      const mine = relayed.filter((e) => e.sink === relay.sink);
      const lag = distribution(all, 'messaging.outbox.relay.lag', where);
      assert.equal(lag.count, relay.outcomes.confirmed);
      assert.equal(lag.unit, 's');
      const batch = distribution(all, 'messaging.outbox.relay.batch.messages', where);
      assert.equal(batch.sum, mine.length);
      assert.equal(batch.count, batches.filter((e) => e.sink === relay.sink).length);
      assert.deepEqual(batch.boundaries, OTEL_BATCH_BUCKETS);
      assert.equal(batch.unit, '{message}');
      assert.equal(distribution(all, 'messaging.outbox.relay.batch.duration', where).count, batch.count);
    }
    const refused = points(all, 'messaging.outbox.relay.messages', { 'messaging.outbox.relay.outcome': 'refused' });
    assert.equal(refused[0]?.attributes['error.type'], 'WebhookRefusedError');
    const failed = points(all, 'messaging.outbox.relay.messages', { 'messaging.outbox.relay.outcome': 'failed' });
    assert.equal(failed[0]?.attributes['error.type'], 'WebhookUnavailableError');
    const attributeValues = [...all.values()].flatMap((metric) =>
      metric.dataPoints.flatMap((point) => Object.values(point.attributes).map(String)),
    );
    for (const id of [...ids, ...messageIds]) assert.ok(!attributeValues.includes(id), `no attribute holds ${id}`);

    // statsd: rejected's path, one line per row and per batch; the sink's '.' flattened.
    await client.flush();
    const path = `shop.${shortHostname()}.relays`;
    const count = (line: string): number => lines.filter((l) => l === line).length;
    const timings = (key: string): number => lines.filter((l) => l.startsWith(`${path}.${key}:`) && l.endsWith('|ms')).length;
    await waitFor(
      () => count(`${path}.relay.audit_hook.confirmed:1|c`) === 3 && count(`${path}.relay.webhook.confirmed:1|c`) === 7,
      {
        what: 'the statsd lines',
      },
    );
    assert.equal(count(`${path}.relay.webhook.refused:1|c`), 1);
    assert.equal(count(`${path}.relay.webhook.failed:1|c`), 1);
    assert.equal(count(`${path}.relay.audit_hook.refused:1|c`), 0);
    assert.equal(timings('relay.webhook.confirm_time'), 7, 'confirmed rows only');
    assert.equal(timings('relay.webhook.lag'), 7);
    assert.equal(timings('relay.audit_hook.lag'), 3);
    for (const sink of ['webhook', 'audit_hook']) {
      const n = batches.filter((e) => e.sink === (sink === 'webhook' ? 'webhook' : 'audit.hook')).length;
      assert.equal(count(`${path}.relay.${sink}.batches:1|c`), n, `${sink} batches`);
      assert.equal(timings(`relay.${sink}.batch_time`), n);
    }
    assert.equal(client.sendErrors, 0);
    client.close();

    const tool = await promtool();
    if (tool.skip !== undefined) {
      t.skip(tool.skip);
      return;
    }
    const checked = await checkMetrics(tool.path, text);
    assert.equal(checked.code, 0, `promtool check metrics:\n${checked.output}`);
  });

  test('values a broken clock could give, a lag without a confirm, an outcome or event of a later version: no throw, nothing poisoned', async () => {
    const registry = new Registry();
    const otel = meters();
    const client = new StatsdClient({ host: '127.0.0.1', port: statsd.address().port, prefix: 'odd' }, 'c', newOutbox.logger);
    const recorders = [
      prometheusRecorder({ registry }),
      openTelemetryRecorder({ meterProvider: otel.provider }),
      statsdRecorder(client),
    ];
    const scope = { queue: 'q', subscriber: 's', messageId: 'tbl:17', deliveriesCount: 1, sink: 'k' };
    const events: OutboxEvent[] = [
      { type: 'relayed', ...scope, outcome: 'confirmed', confirmSeconds: Number.NaN, lagSeconds: Number.POSITIVE_INFINITY },
      { type: 'relayed', ...scope, outcome: 'refused', confirmSeconds: 0.5, lagSeconds: 3, exceptionType: 'X' },
      { type: 'relayed', ...scope, outcome: 'later' as never, confirmSeconds: 0.1 },
      {
        type: 'relay_batch',
        queue: 'q',
        subscriber: 's',
        sink: 'k',
        messages: 3,
        confirmed: 1,
        refused: 1,
        failed: 1,
        durationSeconds: Number.NaN,
      },
      { type: 'relay_something_new' } as unknown as OutboxEvent,
    ];
    for (const event of events) for (const record of recorders) record(event);
    const labels = { app_name: 'txoutbox', broker: 'outbox', handler: 's', queue: 'q', sink: 'k' };
    assert.equal(await value(registry, 'txoutbox_outbox_relay_messages_total', { ...labels, outcome: 'confirmed' }), 1);
    assert.equal(
      await value(registry, 'txoutbox_outbox_relay_send_duration_seconds_count', { ...labels, outcome: 'confirmed' }),
      undefined,
    );
    assert.equal(
      await value(registry, 'txoutbox_outbox_relay_send_duration_seconds_sum', { ...labels, outcome: 'refused' }),
      0.5,
    );
    assert.equal(
      await value(registry, 'txoutbox_outbox_relay_lag_seconds_count', labels),
      undefined,
      'no finite lag of a confirmed row',
    );
    assert.equal(await value(registry, 'txoutbox_outbox_relay_messages_total', { ...labels, outcome: 'later' }), 1);
    assert.equal(await value(registry, 'txoutbox_outbox_relay_batch_messages_sum', labels), 3);
    assert.equal(await value(registry, 'txoutbox_outbox_relay_batch_duration_seconds_count', labels), undefined);
    assert.doesNotMatch(await registry.metrics(), /NaN|Inf[^"]/);

    const all = await otel.collect();
    assert.equal(counted(all, 'messaging.outbox.relay.messages', {}), 3);
    assert.equal(distribution(all, 'messaging.outbox.relay.send.duration', {}).count, 2);
    assert.equal(all.get('messaging.outbox.relay.lag'), undefined);
    assert.equal(all.get('messaging.outbox.relay.batch.duration'), undefined);

    await client.flush();
    const path = `odd.${shortHostname()}.c`;
    await waitFor(() => lines.some((l) => l.startsWith(`${path}.relay.k.batches`)), { what: 'the statsd lines' });
    const mine = lines.filter((l) => l.startsWith(`${path}.`));
    assert.ok(!mine.some((l) => /NaN|Infinity/.test(l)), mine.join('\n'));
    assert.ok(!mine.some((l) => l.includes('.lag:')), 'a refused row has no lag');
    client.close();
  });
});
