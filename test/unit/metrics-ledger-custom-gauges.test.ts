/**
 * Handler gauges (`ctx.stats.set`) across a consumer's processes: each process's value is its own
 * series, labelled with a bounded process number, never summed with the others'; txoutbox's own
 * in-process gauge and every counter and histogram stay summed. The child ids have ConsumerSlot's
 * shape, `<consumer>/<pid>/<forkedAtMs>`.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Registry } from 'prom-client';

import { CustomStatMetrics } from '../../src/prometheus/custom-stat-metrics.js';
import { gauge } from '../../src/prometheus/registered-metrics.js';
import { MetricsLedger, type MetricSnapshot } from '../../src/runner/metrics/metrics-ledger.js';

/** One consumer process's registry: its handler's custom stats and the middleware's in-process gauge. */
function child(consumer: string) {
  const registry = new Registry();
  const stats = new CustomStatMetrics(registry, 'txoutbox', 'txoutbox', [0.1, 1]);
  const inProcess = gauge(registry, {
    name: 'txoutbox_received_messages_in_process',
    help: 'in process',
    labelNames: ['app_name', 'broker', 'handler'],
  });
  const labels = { app_name: 'txoutbox', broker: 'outbox', handler: consumer };
  return {
    set: (key: string, value: number) => {
      stats.record({ kind: 'gauge', key, value, subscriber: consumer, queue: 'q' });
    },
    incr: (key: string, value: number) => {
      stats.record({ kind: 'counter', key, value, subscriber: consumer, queue: 'q' });
    },
    observe: (key: string, seconds: number) => {
      stats.record({ kind: 'duration', key, value: seconds, subscriber: consumer, queue: 'q' });
    },
    inFlight: (n: number) => {
      inProcess.set(labels, n);
    },
    report: async () => (await registry.getMetricsAsJSON()) as unknown as MetricSnapshot[],
  };
}

interface Series {
  readonly labels: Record<string, string>;
  readonly value: number;
}

/** Every sample of `name` in the merged registry, labels as strings, sorted by labels. */
async function series(ledger: MetricsLedger, name: string, where: Record<string, string> = {}): Promise<Series[]> {
  const found: Series[] = [];
  for (const metric of await ledger.merged().getMetricsAsJSON()) {
    for (const value of metric.values as { value: number; labels: Record<string, unknown>; metricName?: string }[]) {
      if ((value.metricName ?? metric.name) !== name) continue;
      const labels = Object.fromEntries(Object.entries(value.labels).map(([k, v]) => [k, String(v)]));
      if (Object.entries(where).every(([k, v]) => labels[k] === v)) found.push({ labels, value: value.value });
    }
  }
  return found.sort((a, b) => JSON.stringify(a.labels).localeCompare(JSON.stringify(b.labels)));
}

const GAUGE = 'txoutbox_custom_temperature_celsius';
const base = (handler: string) => ({ app_name: 'txoutbox', broker: 'outbox', handler });

describe('MetricsLedger: handler gauges across processes', () => {
  test('4 processes each set 21: four series of 21, one per process (not one of 84); counters, histograms and in-process summed', async () => {
    const ledger = new MetricsLedger();
    for (let i = 0; i < 4; i += 1) {
      const c = child('sensors');
      c.set('temperature_celsius', 21);
      c.incr('readings', 10);
      c.observe('lookup', 0.05);
      c.inFlight(3);
      ledger.report(`sensors/${1000 + i}/1700000000000`, await c.report(), 'sensors');
    }
    assert.deepEqual(await series(ledger, GAUGE), [
      { labels: { ...base('sensors'), process: '0' }, value: 21 },
      { labels: { ...base('sensors'), process: '1' }, value: 21 },
      { labels: { ...base('sensors'), process: '2' }, value: 21 },
      { labels: { ...base('sensors'), process: '3' }, value: 21 },
    ]);
    assert.deepEqual(await series(ledger, 'txoutbox_custom_readings_total'), [{ labels: base('sensors'), value: 40 }]);
    assert.deepEqual(await series(ledger, 'txoutbox_custom_lookup_seconds_count'), [{ labels: base('sensors'), value: 4 }]);
    assert.deepEqual(await series(ledger, 'txoutbox_received_messages_in_process'), [{ labels: base('sensors'), value: 12 }]);
  });

  test('a process that exits takes its gauge with it; its replacement takes the freed number, so restarts add no series', async () => {
    const ledger = new MetricsLedger();
    const a = child('sensors');
    const b = child('sensors');
    a.set('temperature_celsius', 21);
    b.set('temperature_celsius', 22);
    ledger.report('sensors/1/1', await a.report(), 'sensors');
    ledger.report('sensors/2/1', await b.report(), 'sensors');

    ledger.retire('sensors/1/1'); // SIGKILLed: what it set is not true of any live process
    assert.deepEqual(await series(ledger, GAUGE), [{ labels: { ...base('sensors'), process: '1' }, value: 22 }]);
    // Its last report, still in the pipe when it was retired, does not bring the series back.
    ledger.report('sensors/1/1', await a.report(), 'sensors');
    assert.deepEqual(await series(ledger, GAUGE), [{ labels: { ...base('sensors'), process: '1' }, value: 22 }]);

    // A crash loop: the first process restarted 50 times (exit, then fork), each setting a new value.
    const seen = new Set<string>();
    let previous = 'sensors/1/1';
    for (let restart = 0; restart < 50; restart += 1) {
      ledger.retire(previous);
      const id = `sensors/${100 + restart}/${restart}`;
      const replacement = child('sensors');
      ledger.report(id, await replacement.report(), 'sensors'); // before its first set: no series yet
      assert.deepEqual(await series(ledger, GAUGE, { process: '0' }), []);
      replacement.set('temperature_celsius', restart);
      ledger.report(id, await replacement.report(), 'sensors');
      const now = await series(ledger, GAUGE);
      for (const s of now) seen.add(s.labels.process ?? 'none');
      assert.deepEqual(now, [
        { labels: { ...base('sensors'), process: '0' }, value: restart },
        { labels: { ...base('sensors'), process: '1' }, value: 22 },
      ]);
      previous = id;
    }
    assert.deepEqual([...seen].sort(), ['0', '1']);
  });

  test('numbers are per consumer: each consumer counts from 0', async () => {
    const ledger = new MetricsLedger();
    for (const [i, consumer] of ['orders', 'orders', 'emails'].entries()) {
      const c = child(consumer);
      c.set('temperature_celsius', i);
      ledger.report(`${consumer}/${i}/1`, await c.report(), consumer);
    }
    assert.deepEqual(await series(ledger, GAUGE), [
      { labels: { ...base('emails'), process: '0' }, value: 2 },
      { labels: { ...base('orders'), process: '0' }, value: 0 },
      { labels: { ...base('orders'), process: '1' }, value: 1 },
    ]);
  });

  test("a rollout's replacement takes the next number while the old process still runs; numbers stay below the most processes alive at once", async () => {
    const ledger = new MetricsLedger();
    const report = async (id: string, value: number) => {
      const c = child('sensors');
      c.set('temperature_celsius', value);
      ledger.report(id, await c.report(), 'sensors');
    };
    const processLabels = async () => (await series(ledger, GAUGE)).map((s) => s.labels.process);
    await report('sensors/1/1', 1);
    await report('sensors/2/1', 2);
    let pid = 2;
    for (let rollout = 0; rollout < 10; rollout += 1) {
      // One position at a time, as rollout.ts does: replacement ready, then the old one drains.
      for (const old of [...ledger.liveChildren]) {
        pid += 1;
        await report(`sensors/${pid}/${rollout}`, 3);
        assert.ok(
          (await processLabels()).every((p) => p !== undefined && Number(p) < 3),
          String(await processLabels()),
        );
        ledger.retire(old);
      }
      assert.equal((await processLabels()).length, 2);
    }
  });

  test('a number admitted at start is the one its reports carry; a process admitted but retired before reporting frees it', async () => {
    const ledger = new MetricsLedger();
    assert.equal(ledger.admit('sensors/1/1', 'sensors'), 0);
    assert.equal(ledger.admit('sensors/2/1', 'sensors'), 1);
    // A process that never reported (its fork failed, it crashed at start) gives its number back.
    ledger.retire('sensors/1/1');
    assert.equal(ledger.admit('sensors/3/1', 'sensors'), 0);
    const c = child('sensors');
    c.set('temperature_celsius', 7);
    ledger.report('sensors/2/1', await c.report(), 'sensors');
    ledger.report('sensors/3/1', await c.report(), 'sensors');
    assert.deepEqual(
      (await series(ledger, GAUGE)).map((s) => s.labels.process),
      ['0', '1'],
      'the label is the number the process was started with (its statsd gauges carry the same)',
    );
  });

  test('children reported without a consumer still get a number each: values are never added up', async () => {
    const ledger = new MetricsLedger();
    for (const id of ['a', 'b']) {
      const c = child('sensors');
      c.set('temperature_celsius', 5);
      ledger.report(id, await c.report());
    }
    assert.deepEqual(
      (await series(ledger, GAUGE)).map((s) => s.value),
      [5, 5],
    );
  });
});
