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
});
