import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { inspect } from 'node:util';

import { DataPointType, MeterProvider, type MetricData, MetricReader } from '@opentelemetry/sdk-metrics';
import { Registry } from 'prom-client';

import { InvalidOptionError, type Middleware, NoRetry } from '../../src/index.js';
import { INSTRUMENTATION_SCOPE, openTelemetryRecorder } from '../../src/opentelemetry/index.js';
import { prometheusMiddleware } from '../../src/prometheus/index.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { TestLogger } from '../support/test-logger.js';
import { inTransaction } from '../support/transaction.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

type Labels = Record<string, string>;

/** The label value every publish past `maxDestinations` (and every class past `maxExceptionTypes`) is counted under. */
const OVERFLOW = '_other';

/** Every sample of the family `name` (histogram buckets left out), as `labels → value`. */
async function samples(registry: Registry, name: string, sample = name): Promise<{ labels: Labels; value: number }[]> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  assert.ok(metric !== undefined, `${name} is registered`);
  return (metric.values as { value: number; labels: Labels; metricName?: string }[])
    .filter((entry) => (entry.metricName ?? metric.name) === sample)
    .map(({ labels, value }) => ({ labels, value }));
}

/** The distinct values of `label` among the samples of `name`, and the sum of their values. */
async function byLabel(registry: Registry, name: string, label: string, sample = name, where: Labels = {}) {
  const values = new Set<string>();
  let total = 0;
  for (const entry of await samples(registry, name, sample)) {
    if (!Object.entries(where).every(([k, v]) => entry.labels[k] === v)) continue;
    values.add(entry.labels[label] as string);
    total += entry.value;
  }
  return { values, total };
}

/** An Error subclass named at run time: what a dynamically created class does to exception_type. */
function classNamed(name: string): new (message: string) => Error {
  const made = class extends Error {};
  Object.defineProperty(made, 'name', { value: name });
  return made;
}

/** Runs `fn`, keeping the JSON lines txoutbox's default logger writes to stderr meanwhile (others pass through). */
async function stderrOf(fn: () => Promise<unknown>): Promise<Record<string, unknown>[]> {
  const lines: Record<string, unknown>[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = (chunk: string | Uint8Array, ...rest: never[]) => {
    const text = String(chunk);
    if (!text.includes('"name":"txoutbox"')) return write(chunk, ...rest);
    lines.push(JSON.parse(text) as Record<string, unknown>);
    return true;
  };
  try {
    await fn();
  } finally {
    process.stderr.write = write;
  }
  return lines;
}

/** `count` queue names built from data (a tenant id), as a per-tenant producer would publish to. */
function tenantQueues(count: number): string[] {
  return Array.from({ length: count }, (_, n) => `orders.tenant-${n}`);
}

describe('published_messages_* by destination: bounded by maxDestinations', () => {
  test('default 500: 505 data-derived queues make 501 series (500 + _other), and every publish is counted', async () => {
    const registry = new Registry();
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'c_default', {
      middlewares: [prometheusMiddleware({ registry })],
    });
    const queues = tenantQueues(505);
    // No logger option: the warning goes where the Outbox's default logger writes, stderr.
    const warnings = await stderrOf(() =>
      inTransaction(db.pool, async (client) => {
        for (const queue of queues) await outbox.publish(client, queue, { queue });
      }),
    );

    const published = await byLabel(registry, 'txoutbox_published_messages_total', 'destination');
    assert.equal(published.values.size, 501, `${published.values.size} destination series`);
    assert.ok(published.values.has(OVERFLOW));
    assert.equal(published.total, 505, 'no publish dropped from the total');
    const durations = await byLabel(
      registry,
      'txoutbox_published_messages_duration_seconds',
      'destination',
      'txoutbox_published_messages_duration_seconds_count',
    );
    assert.equal(durations.values.size, 501);
    assert.equal(durations.total, 505);
    assert.equal(warnings.length, 1, 'warned once, not per publish');
    assert.equal(warnings[0]?.level, 'warn');
    assert.equal(warnings[0]?.option, 'maxDestinations');
  });

  test('maxDestinations: 3 over 8 queues: the first 3 keep their own series, the rest share _other; totals exact', async () => {
    const registry = new Registry();
    const logger = new TestLogger();
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'c_small', {
      middlewares: [prometheusMiddleware({ registry, logger, maxDestinations: 3 })],
    });
    const queues = tenantQueues(8);
    let rows = 0;
    await inTransaction(db.pool, async (client) => {
      for (const [n, queue] of queues.entries()) {
        const bodies = Array.from({ length: n + 1 }, (_, i) => i);
        await outbox.publishBatch(client, queue, bodies);
        rows += bodies.length;
      }
      // A queue admitted before the bound was reached keeps its series after it.
      await outbox.publish(client, queues[0] as string, 'again');
      rows += 1;
    });

    const published = await samples(registry, 'txoutbox_published_messages_total');
    const base = { app_name: 'txoutbox', broker: 'outbox', status: 'success' };
    assert.deepEqual(published, [
      { labels: { ...base, destination: 'orders.tenant-0' }, value: 2 },
      { labels: { ...base, destination: 'orders.tenant-1' }, value: 2 },
      { labels: { ...base, destination: 'orders.tenant-2' }, value: 3 },
      { labels: { ...base, destination: OVERFLOW }, value: 4 + 5 + 6 + 7 + 8 },
    ]);
    assert.equal(
      published.reduce((sum, s) => sum + s.value, 0),
      rows,
    );
    const warnings = logger.entries.filter((e) => e.level === 'warn');
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]?.message ?? '', /maxDestinations/);
    assert.equal(warnings[0]?.fields.value, 'orders.tenant-3', 'names the first queue counted under _other');
  });
});

describe('exception_type: bounded by maxExceptionTypes', () => {
  test('publish side: classes made at run time beyond the bound share _other; failed calls and bodies all counted', async () => {
    const registry = new Registry();
    const logger = new TestLogger();
    let calls = 0;
    // Inside the metrics middleware: its publish throws a class of its own each call.
    const failing: Middleware = {
      name: 'failing',
      publish: () => {
        const Failure = classNamed(`TenantFailure${calls++}Error`);
        return Promise.reject(new Failure('refused'));
      },
    };
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'c_publish_errors', {
      middlewares: [prometheusMiddleware({ registry, logger, maxExceptionTypes: 2 }), failing],
    });
    for (let n = 0; n < 6; n++) {
      await assert.rejects(inTransaction(db.pool, (client) => outbox.publishBatch(client, 'orders', [1, 2])));
    }

    const exceptions = await byLabel(registry, 'txoutbox_published_messages_exceptions_total', 'exception_type');
    assert.deepEqual([...exceptions.values].sort(), ['TenantFailure0Error', 'TenantFailure1Error', OVERFLOW].sort());
    assert.equal(exceptions.total, 6, 'every failed call');
    const errors = await byLabel(registry, 'txoutbox_published_messages_total', 'status', undefined, { status: 'error' });
    assert.equal(errors.total, 12, 'every body of every failed call');
    const warnings = logger.entries.filter((e) => e.level === 'warn');
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]?.fields.option, 'maxExceptionTypes');
  });

  test('consume side: the same bound; every failed run is counted', async () => {
    const registry = new Registry();
    const logger = new TestLogger();
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'c_consume_errors', {
      middlewares: [prometheusMiddleware({ registry, logger, maxExceptionTypes: 2 })],
    });
    outbox.subscribe<number>(
      'work',
      (message) => {
        const Failure = classNamed(`Handler${message.body}Error`);
        throw new Failure('failed');
      },
      { name: 'work', retry: new NoRetry(), ...FAST_POLL },
    );
    outbox.start();
    await inTransaction(db.pool, (client) => outbox.publishBatch(client, 'work', [0, 1, 2, 3, 4]));
    await log.waitFor('nacked_terminal', 5);
    await outbox.stop();

    const exceptions = await byLabel(registry, 'txoutbox_received_processed_messages_exceptions_total', 'exception_type');
    assert.equal(exceptions.values.size, 3, [...exceptions.values].join(', '));
    assert.ok(exceptions.values.has(OVERFLOW));
    assert.equal(exceptions.total, 5);
  });
});

/** Collects on demand, cumulative (the default temporality: what a Prometheus exporter and OTLP read). */
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

/** The distinct values of attribute `key` among the points of counter `name`, and the sum of the points. */
function pointsBy(all: Map<string, MetricData>, name: string, key: string) {
  const metric = all.get(name);
  assert.equal(metric?.dataPointType, DataPointType.SUM, name);
  const values = new Set(metric.dataPoints.map((point) => String(point.attributes[key])));
  return { points: metric.dataPoints.length, values, total: metric.dataPoints.reduce((sum, p) => sum + p.value, 0) };
}

describe('openTelemetryRecorder: messaging.destination.name and error.type bounded the same way', () => {
  // The SDK's own cardinality limit (2,000 per instrument) is per collection: with cumulative
  // temporality every collection keeps the last one's points, so new queues still add points forever.
  test('default 500: 505 data-derived queues make 501 points of sent.messages; every row counted', async () => {
    const { provider, collect } = meters();
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'c_otel', {
      recorder: openTelemetryRecorder({ meterProvider: provider }),
    });
    const warnings = await stderrOf(() =>
      inTransaction(db.pool, async (client) => {
        for (const queue of tenantQueues(505)) await outbox.publish(client, queue, { queue });
      }),
    );

    const sent = pointsBy(await collect(), 'messaging.client.sent.messages', 'messaging.destination.name');
    assert.equal(sent.points, 501, `${sent.points} points`);
    assert.ok(sent.values.has(OVERFLOW));
    assert.equal(sent.total, 505);
    const duration = (await collect()).get('messaging.client.operation.duration');
    assert.equal(duration?.dataPoints.length, 501);
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]?.option, 'maxDestinations');
  });

  test('maxExceptionTypes: 2: error.type past it is _other, every failure counted', async () => {
    const { provider, collect } = meters();
    const logger = new TestLogger();
    const record = openTelemetryRecorder({ meterProvider: provider, logger, maxExceptionTypes: 2 });
    for (let n = 0; n < 6; n++) {
      record({
        type: 'nacked_retried',
        queue: 'work',
        subscriber: 'work',
        messageId: String(n),
        durationSeconds: 0.001,
        deliveriesCount: 1,
        nextDelaySeconds: 1,
        exceptionType: `Tenant${n}Error`,
      });
    }
    const retries = pointsBy(await collect(), 'messaging.outbox.retries', 'error.type');
    assert.deepEqual([...retries.values].sort(), ['Tenant0Error', 'Tenant1Error', OVERFLOW].sort());
    assert.equal(retries.total, 6);
    assert.equal(logger.entries.filter((e) => e.level === 'warn').length, 1);
  });
});

describe('options', () => {
  const registry = new Registry();
  for (const [option, value] of [
    ['maxDestinations', 0],
    ['maxDestinations', -1],
    ['maxDestinations', 1.5],
    ['maxDestinations', '500'],
    ['maxDestinations', Number.POSITIVE_INFINITY],
    ['maxExceptionTypes', 0],
    ['maxExceptionTypes', '100'],
    ['logger', {}],
    ['logger', 'console'],
  ] as const) {
    test(`${option}: ${inspect(value)} is refused at construction, naming the option and the value`, () => {
      assert.throws(
        () => prometheusMiddleware({ registry, [option]: value }),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option && error.value === value,
      );
    });
  }
});
