import assert from 'node:assert/strict';
import { test } from 'node:test';

import { MetricsLedger } from '../../src/runner/metrics/metrics-ledger.js';
import { ParentMetrics } from '../../src/runner/parent-metrics.js';

test("a child's metric named like one of the supervisor's is left out; the scrape still answers", async () => {
  // Reproduction: Registry.merge threw "already registered" on every scrape.
  const ledger = new MetricsLedger();
  const parent = new ParentMetrics('app', () => undefined, ledger);
  ledger.report('a/1/1', [
    { name: 'app_consumer_restarts_total', help: 'x', type: 'counter', aggregator: 'sum', values: [{ value: 99, labels: {} }] },
    { name: 'app_handled_total', help: 'h', type: 'counter', aggregator: 'sum', values: [{ value: 3, labels: {} }] },
  ]);
  const text = await parent.registry().metrics();
  assert.match(text, /^app_handled_total 3$/m);
  assert.doesNotMatch(text, / 99$/m);
});
