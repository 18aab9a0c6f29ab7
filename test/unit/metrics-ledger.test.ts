import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { describe, test } from 'node:test';

import { Counter, Gauge, Histogram, Registry } from 'prom-client';

import { ConsumerSlot } from '../../src/runner/consumer-slot.js';
import { MetricsLedger, type MetricSnapshot } from '../../src/runner/metrics/metrics-ledger.js';
import { DEFAULT_RESTART_POLICY } from '../../src/runner/runner.js';
import { silentLogger } from '../../src/util/logger.js';
import { CONSUMER_CHILD_SPEC } from '../support/child-specs.js';

/** A child's registry: what one consumer process would report. */
function childRegistry() {
  const registry = new Registry();
  const handled = new Counter({
    name: 'handled_total',
    help: 'h',
    labelNames: ['handler'],
    registers: [registry],
    aggregator: 'sum',
  });
  const inFlight = new Gauge({
    name: 'in_process',
    help: 'g',
    labelNames: ['handler'],
    registers: [registry],
    aggregator: 'sum',
  });
  const duration = new Histogram({
    name: 'duration_seconds',
    help: 'd',
    buckets: [0.1, 1],
    registers: [registry],
    aggregator: 'sum',
  });
  const report = async () => (await registry.getMetricsAsJSON()) as unknown as MetricSnapshot[];
  return { handled, inFlight, duration, report };
}

async function sample(ledger: MetricsLedger, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const metrics = await ledger.merged().getMetricsAsJSON();
  for (const metric of metrics) {
    for (const value of metric.values as { value: number; labels: Record<string, unknown>; metricName?: string }[]) {
      const sampleName = value.metricName ?? metric.name;
      if (sampleName === name && Object.entries(labels).every(([k, v]) => String(value.labels[k]) === v)) return value.value;
    }
  }
  return undefined;
}

describe('MetricsLedger', () => {
  test('sums live children; a retired child keeps its counters and histograms but not its gauges', async () => {
    const ledger = new MetricsLedger();
    const a = childRegistry();
    const b = childRegistry();
    a.handled.inc({ handler: 'orders' }, 5);
    a.inFlight.set({ handler: 'orders' }, 2);
    a.duration.observe(0.05);
    b.handled.inc({ handler: 'orders' }, 3);
    b.inFlight.set({ handler: 'orders' }, 1);
    ledger.report('a', await a.report());
    ledger.report('b', await b.report());
    assert.equal(await sample(ledger, 'handled_total', { handler: 'orders' }), 8);
    assert.equal(await sample(ledger, 'in_process', { handler: 'orders' }), 3);

    ledger.retire('a'); // SIGKILLed: its last report stays counted
    assert.equal(await sample(ledger, 'handled_total', { handler: 'orders' }), 8);
    assert.equal(await sample(ledger, 'in_process', { handler: 'orders' }), 1);
    assert.equal(await sample(ledger, 'duration_seconds_count'), 1);
    assert.equal(await sample(ledger, 'duration_seconds_bucket', { le: '0.1' }), 1);

    const a2 = childRegistry(); // the restarted child starts from zero
    ledger.report('a2', await a2.report());
    assert.equal(await sample(ledger, 'handled_total', { handler: 'orders' }), 8);
    a2.handled.inc({ handler: 'orders' }, 1);
    a2.duration.observe(0.5);
    ledger.report('a2', await a2.report());
    assert.equal(await sample(ledger, 'handled_total', { handler: 'orders' }), 9);
    assert.equal(await sample(ledger, 'duration_seconds_count'), 2);
    assert.equal(await sample(ledger, 'duration_seconds_bucket', { le: '0.1' }), 1);
    assert.equal(await sample(ledger, 'duration_seconds_bucket', { le: '1' }), 2);
    assert.deepEqual(ledger.liveChildren, ['b', 'a2']);
  });

  test('counters never decrease across any sequence of reports, retirements and restarts', async () => {
    const ledger = new MetricsLedger();
    let last = 0;
    let generation = 0;
    const children = new Map<string, ReturnType<typeof childRegistry>>();
    for (let step = 0; step < 300; step += 1) {
      const id = `c${step % 3}`;
      const roll = (step * 7919) % 10;
      if (roll === 0 && children.has(id)) {
        ledger.retire(id);
        children.delete(id);
        continue;
      }
      let child = children.get(id);
      if (child === undefined) {
        child = childRegistry();
        children.set(id, child);
        generation += 1;
      }
      child.handled.inc({ handler: 'q' }, roll);
      ledger.report(id, await child.report());
      const total = (await sample(ledger, 'handled_total', { handler: 'q' })) ?? 0;
      assert.ok(total >= last, `step ${step}: ${total} < ${last}`);
      last = total;
    }
    assert.ok(generation > 3, 'the sequence restarted children');
  });

  test('a report that arrives after its child was retired is ignored: no doubled counters, no stuck gauge', async () => {
    const ledger = new MetricsLedger();
    const a = childRegistry();
    a.handled.inc({ handler: 'orders' }, 5);
    a.inFlight.set({ handler: 'orders' }, 2);
    ledger.report('a', await a.report());
    ledger.retire('a');
    // The child's last flush, still in the IPC pipe when its exit was seen.
    ledger.report('a', await a.report());
    assert.equal(await sample(ledger, 'handled_total', { handler: 'orders' }), 5);
    assert.equal(await sample(ledger, 'in_process', { handler: 'orders' }), undefined);
    assert.deepEqual(ledger.liveChildren, []);
    ledger.retire('a'); // retiring it again adds nothing
    assert.equal(await sample(ledger, 'handled_total', { handler: 'orders' }), 5);
  });

  test('a malformed report (a handler sending its own `metrics` message) is dropped entry by entry and named; scrapes go on', async () => {
    // Reproduction (review finding): `{ snapshot: {} }` threw from merged() on every scrape, and an
    // entry without `values` did too; the runner's /metrics answered 500 from then on.
    const ledger = new MetricsLedger();
    const a = childRegistry();
    a.handled.inc({ handler: 'orders' }, 4);
    assert.deepEqual(ledger.report('a', await a.report()), []);
    const whole = ledger.report('a', {});
    assert.match(whole.join('\n'), /not a list of metrics/);
    assert.equal(await sample(ledger, 'handled_total', { handler: 'orders' }), 4, 'its last good report stands');

    const good = await a.report();
    const problems = ledger.report('a', [
      ...good,
      { name: 'no_values', help: 'x', type: 'gauge', aggregator: 'sum' },
      { name: 'bad type', help: 'x', type: 'gauge', aggregator: 'sum', values: [] },
      { name: 'odd_kind', help: 'x', type: 'info', aggregator: 'sum', values: [] },
      { name: 'bad_value', help: 'x', type: 'gauge', aggregator: 'sum', values: [{ value: 'many', labels: {} }] },
      { name: 'bad_labels', help: 'x', type: 'gauge', aggregator: 'sum', values: [{ value: 1, labels: { a: {} } }] },
      null,
      // Review findings: a name prom-client's plain-object registry already "has", and one name twice.
      { name: 'constructor', help: 'x', type: 'counter', aggregator: 'sum', values: [{ value: 1, labels: {} }] },
      { name: 'handled_total', help: 'x', type: 'histogram', aggregator: 'sum', values: [] },
    ]);
    assert.equal(problems.length, 8, problems.join('\n'));
    assert.match(problems.join('\n'), /"handled_total" is reported twice/);
    assert.match(problems.join('\n'), /"no_values"/);
    assert.equal(await sample(ledger, 'handled_total', { handler: 'orders' }), 4);
    const names = (await ledger.merged().getMetricsAsJSON()).map((m) => m.name).sort();
    assert.deepEqual(names, ['duration_seconds', 'handled_total', 'in_process']);
    assert.match(await ledger.merged().metrics(), /handled_total\{handler="orders"\} 4/);
  });

  test('one name reported as two types by two processes (a gauge in one consumer, a duration in another) keeps the first type only', async () => {
    // Reproduction (review finding): both were merged into one family, a gauge with _bucket samples.
    const ledger = new MetricsLedger();
    const gaugeRegistry = new Registry();
    new Gauge({ name: 'app_custom_wait_seconds', help: 'g', registers: [gaugeRegistry], aggregator: 'omit' }).set(3);
    const histogramRegistry = new Registry();
    new Histogram({ name: 'app_custom_wait_seconds', help: 'h', buckets: [1], registers: [histogramRegistry] }).observe(0.5);
    const report = async (registry: Registry) => (await registry.getMetricsAsJSON()) as unknown as MetricSnapshot[];
    assert.deepEqual(ledger.report('a', await report(gaugeRegistry), 'sensors'), []);
    const problems = ledger.report('b', await report(histogramRegistry), 'timers');
    assert.match(problems.join('\n'), /"app_custom_wait_seconds" is a histogram here and a gauge in another process/);
    const text = await ledger.merged().metrics();
    assert.doesNotMatch(text, /_bucket/);
    assert.match(text, /# TYPE app_custom_wait_seconds gauge/);
    ledger.retire('a'); // the gauge goes with its process: the histogram is no longer in conflict
    assert.deepEqual(ledger.report('b', await report(histogramRegistry), 'timers'), []);
    assert.match(await ledger.merged().metrics(), /# TYPE app_custom_wait_seconds histogram/);
  });

  test('retiring an unknown child is a no-op', async () => {
    const ledger = new MetricsLedger();
    ledger.retire('nobody');
    assert.deepEqual(await ledger.merged().getMetricsAsJSON(), []);
  });
});

/** A child process whose events the test emits, in the order the test wants. */
class FakeChild extends EventEmitter {
  readonly pid = 4242;
  readonly signals: string[] = [];
  kill(signal: string): boolean {
    this.signals.push(signal);
    return true;
  }
  send(): boolean {
    return true;
  }
}

const SPEC = CONSUMER_CHILD_SPEC;

describe('ConsumerSlot → MetricsLedger', () => {
  test("a child's last report that arrives after its exit event is counted once, and the child retires", async () => {
    const ledger = new MetricsLedger();
    const child = new FakeChild();
    const slot = new ConsumerSlot(SPEC, {
      // Long enough that the slot does not fork again during the test.
      policy: { ...DEFAULT_RESTART_POLICY, restartInitialDelayMs: 60_000 },
      ledger,
      logger: silentLogger,
      onRestart: () => undefined,
      forkChild: () => child as unknown as ChildProcess,
    });
    slot.start();
    const metrics = childRegistry();
    metrics.handled.inc({ handler: 'orders' }, 3);
    metrics.inFlight.set({ handler: 'orders' }, 1);
    child.emit('message', { type: 'metrics', snapshot: await metrics.report() });
    child.emit('exit', 1, null);
    // The final flush was still in the channel: Node delivers it after 'exit', before 'close'.
    metrics.handled.inc({ handler: 'orders' }, 2);
    metrics.inFlight.set({ handler: 'orders' }, 0);
    child.emit('message', { type: 'metrics', snapshot: await metrics.report() });
    child.emit('close', 1, null);
    child.emit('message', { type: 'metrics', snapshot: await metrics.report() }); // cannot happen; ignored if it did

    assert.equal(await sample(ledger, 'handled_total', { handler: 'orders' }), 5);
    assert.equal(await sample(ledger, 'in_process', { handler: 'orders' }), undefined);
    assert.deepEqual(ledger.liveChildren, []);
    await slot.stop();
  });

  test("a process's malformed metrics report is logged once per problem, not at every flush, and /metrics keeps working", async () => {
    const ledger = new MetricsLedger();
    const child = new FakeChild();
    const warnings: Record<string, unknown>[] = [];
    const slot = new ConsumerSlot(SPEC, {
      policy: { ...DEFAULT_RESTART_POLICY, restartInitialDelayMs: 60_000 },
      ledger,
      logger: { ...silentLogger, warn: (fields: Record<string, unknown>) => void warnings.push(fields) },
      onRestart: () => undefined,
      forkChild: () => child as unknown as ChildProcess,
    });
    slot.start();
    for (let flush = 0; flush < 3; flush += 1) child.emit('message', { type: 'metrics', snapshot: {} });
    assert.deepEqual(
      warnings.map((w) => w.problem),
      ['the report is not a list of metrics: left out whole'],
    );
    await ledger.merged().metrics();
    await slot.stop();
  });
});
