import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Counter, Gauge, Histogram, Registry } from 'prom-client';

import { CounterSeries, GaugeSeries, HistogramSeries } from '../../src/prometheus/series.js';

/**
 * series.ts updates prom-client's entries in place; these tests run the same operations through it
 * and through prom-client's public API on twin metrics, and require the same exposition (values,
 * labels, buckets, exemplars) after every step, across several label sets and the operations that
 * replace or drop an entry behind a Series' back.
 */

const LABELS = ['app_name', 'broker', 'handler', 'status'];
const BUCKETS = [0.005, 0.01, 0.1, 1, 10];

function twins() {
  const made = [new Registry(), new Registry()].map((registry) => {
    const counter = new Counter({ name: 'c_total', help: 'c', labelNames: LABELS, registers: [registry] });
    const gauge = new Gauge({ name: 'g', help: 'g', labelNames: LABELS, registers: [registry] });
    const histogram = new Histogram({ name: 'h', help: 'h', labelNames: LABELS, buckets: BUCKETS, registers: [] });
    const exemplars = new Histogram({
      name: 'x',
      help: 'x',
      labelNames: LABELS,
      buckets: BUCKETS,
      enableExemplars: true,
      registers: [],
    });
    registry.registerMetric(histogram);
    registry.registerMetric(exemplars);
    return { registry, counter, gauge, histogram, exemplars };
  });
  return { fast: made[0]!, plain: made[1]! };
}

/** The registry's JSON with exemplar timestamps left out (they are the clock's). */
async function snapshot(registry: Registry): Promise<unknown> {
  const json = await registry.getMetricsAsJSON();
  return JSON.parse(JSON.stringify(json, (key, value: unknown) => (key === 'timestamp' ? undefined : value))) as unknown;
}

const labelSets = [
  { app_name: 'app', broker: 'outbox', handler: 'a', status: 'acked' },
  { app_name: 'app', broker: 'outbox', handler: 'a', status: 'error' },
  { app_name: 'app', broker: 'outbox', handler: 'b', status: 'acked' },
  // A label value that looks like part of prom-client's key ("k:v,").
  { app_name: 'app', broker: 'outbox', handler: 'c:d,', status: 'acked' },
];

describe('prometheus series (cached label sets)', () => {
  test('counters, gauges and histograms match prom-client, label set by label set', async () => {
    const { fast, plain } = twins();
    const series = labelSets.map((labels) => ({
      labels,
      counter: new CounterSeries(fast.counter, labels),
      gauge: new GaugeSeries(fast.gauge, labels),
      histogram: new HistogramSeries(fast.histogram, labels),
      exemplars: new HistogramSeries(fast.exemplars, labels),
    }));
    // Count the public calls the Series make: after a series' first sample (and a bucket's first
    // exemplar) they must update the entry themselves, or this test would prove nothing.
    let publicCalls = 0;
    for (const metric of [fast.counter, fast.gauge, fast.histogram, fast.exemplars] as unknown as Record<string, unknown>[]) {
      for (const method of ['inc', 'observe']) {
        const original = metric[method];
        if (typeof original !== 'function') continue;
        metric[method] = (...args: unknown[]): unknown => {
          publicCalls++;
          return (original as (...a: unknown[]) => unknown).apply(metric, args);
        };
      }
    }
    const values = [0, 0.003, 0.005, 0.0051, 0.5, 1, 9.99, 10, 11, 250];
    const traceIds = [undefined, 'a'.repeat(32), 'b'.repeat(32), '', 'x'.repeat(65)];
    for (let step = 0; step < 200; step++) {
      const s = series[(step * 7) % series.length]!;
      const value = values[step % values.length]!;
      const traceId = traceIds[step % traceIds.length];
      s.counter.inc(step % 3);
      plain.counter.inc(s.labels, step % 3);
      s.gauge.add(step % 2 === 0 ? 1 : -1);
      plain.gauge.inc(s.labels, step % 2 === 0 ? 1 : -1);
      s.histogram.observe(value);
      plain.histogram.observe(s.labels, value);
      s.exemplars.observe(value, traceId);
      const exemplar = traceId !== undefined && traceId.length > 0 && traceId.length <= 64 ? { trace_id: traceId } : undefined;
      plain.exemplars.observe(
        exemplar === undefined ? { labels: s.labels, value } : { labels: s.labels, value, exemplarLabels: exemplar },
      );
      if (step % 50 === 49) assert.deepEqual(await snapshot(fast.registry), await snapshot(plain.registry), `step ${step}`);
    }
    // 4 label sets × (counter, gauge, histogram, exemplar histogram) + first exemplars per bucket;
    // values above the last bucket with a trace id always go through prom-client.
    assert.ok(publicCalls < 100, `${publicCalls} public calls for 800 samples`);
    const [a, b] = series;
    assert.equal((await fast.counter.get()).values.length, labelSets.length, 'one series per label set');
    assert.notEqual(a!.counter, b!.counter);
  });

  test('reset, resetMetrics, remove and set replace entries: the next call re-creates them as prom-client would', async () => {
    const { fast, plain } = twins();
    const [one, two] = labelSets as [(typeof labelSets)[0], (typeof labelSets)[0]];
    const counter = new CounterSeries(fast.counter, one);
    const gauge = new GaugeSeries(fast.gauge, one);
    const histogram = new HistogramSeries(fast.exemplars, two);
    const both = (fn: (m: typeof fast) => void) => {
      fn(fast);
      fn(plain);
    };
    const record = () => {
      counter.inc(2);
      plain.counter.inc(one, 2);
      gauge.add(1);
      plain.gauge.inc(one, 1);
      histogram.observe(0.5, 'c'.repeat(32));
      plain.exemplars.observe({ labels: two, value: 0.5, exemplarLabels: { trace_id: 'c'.repeat(32) } });
    };
    record();
    record();
    both((m) => {
      m.registry.resetMetrics();
    });
    record();
    assert.deepEqual(await snapshot(fast.registry), await snapshot(plain.registry), 'after resetMetrics');
    both((m) => {
      m.counter.remove(one);
      m.exemplars.remove(two);
    });
    record();
    assert.deepEqual(await snapshot(fast.registry), await snapshot(plain.registry), 'after remove');
    both((m) => {
      m.gauge.set(one, 10);
    });
    record();
    both((m) => {
      m.counter.inc(one, 5);
    }); // the public API on the same series, beside the Series
    record();
    assert.deepEqual(await snapshot(fast.registry), await snapshot(plain.registry), 'after set and a public inc');
    const [sample] = (await fast.gauge.get()).values;
    assert.equal(sample?.value, 12);
  });

  test("values the fast path leaves to prom-client keep prom-client's behaviour (errors included)", () => {
    const { fast } = twins();
    const [one] = labelSets as [(typeof labelSets)[0]];
    const counter = new CounterSeries(fast.counter, one);
    const histogram = new HistogramSeries(fast.histogram, one);
    counter.inc(1);
    histogram.observe(1);
    assert.throws(() => {
      counter.inc(-1);
    }, /decrease a counter/);
    assert.throws(() => {
      counter.inc(Infinity);
    }, /not a valid number/);
    assert.throws(() => {
      histogram.observe(Number.NaN);
    }, /not a valid number/);
  });
});
