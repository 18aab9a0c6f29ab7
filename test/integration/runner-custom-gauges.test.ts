/**
 * A handler gauge (`ctx.stats.set`) under a real `txoutbox run` with 4 processes: each process's
 * last value is its own series (`process="0"` … `"3"`), not the sum of the four; a SIGKILLed
 * process's series goes with it, its replacement takes the freed number; txoutbox's own in-process
 * gauge and the custom counter stay one summed series. Its statsd lines carry the same numbers: a
 * gauge key per process (`temperature_celsius.process_<n>`), since a statsd server keeps a key's
 * last value.
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import type { Outbox } from '../../src/index.js';
import { useTestDatabase } from '../support/database.js';
import { checkMetrics, promtool } from '../support/promtool.js';
import { runnerTestKit, type Sample, scrape, total } from '../support/runner-process.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const HANDLERS = fileURLToPath(new URL('../fixtures/runner/gauge-handlers.ts', import.meta.url));
const { writeConfig, prepare, remainingRows, start, whenStarted } = runnerTestKit(db);

const GAUGE = 'txoutbox_custom_temperature_celsius';

async function publishReadings(outbox: Outbox, count: number, celsius: number): Promise<void> {
  const bodies = Array.from({ length: count }, () => ({ celsius }));
  await inTransaction(db.pool, (c) => outbox.publishBatch(c, 'sensors', bodies));
}

/** The gauge's samples for the consumer, as `process label → value` (`none` for a sample without one). */
function gaugeByProcess(samples: readonly Sample[]): Record<string, number> {
  const byProcess: Record<string, number> = {};
  for (const s of samples) {
    if (s.name === GAUGE && s.labels.handler === 'sensors') byProcess[s.labels.process ?? 'none'] = s.value;
  }
  return byProcess;
}

async function distinctPids(sinceId: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>(
    "SELECT count(DISTINCT pid) AS n FROM handled WHERE consumer = 'sensors' AND id > $1",
    [sinceId],
  );
  return Number(rows[0]?.n);
}

describe('txoutbox run: handler gauges across processes', () => {
  test('4 processes each set 21: four series of 21, not one of 84; a killed process takes its series with it', async () => {
    const statsd = createSocket('udp4');
    const lines: string[] = [];
    statsd.on('message', (datagram) => lines.push(...datagram.toString().split('\n').filter(Boolean)));
    await new Promise<void>((resolve) => statsd.bind(0, '127.0.0.1', resolve));
    after(() => statsd.close());
    const outbox = await prepare('run_gauges');
    const config = writeConfig(
      'gauges',
      'run_gauges',
      { sensors: { queue: 'sensors', export: 'sensors', processes: 4, handler: HANDLERS } },
      { statsdPort: statsd.address().port },
    );
    const runner = start(config, { HANDLER_DELAY_MS: '400' });
    await whenStarted(runner, { sensors: 4 });
    const url = runner.metricsUrl();

    await publishReadings(outbox, 96, 21);
    // txoutbox's own in-process gauge is a sum: 4 processes × concurrency 4, one series.
    await waitFor(async () => total(await scrape(url), 'txoutbox_received_messages_in_process', { handler: 'sensors' }) === 16, {
      timeoutMs: 20_000,
      intervalMs: 50,
      what: 'every process to run 4 handlers at once',
    });
    const busy = (await scrape(url)).filter((s) => s.name === 'txoutbox_received_messages_in_process');
    assert.ok(
      busy.every((s) => s.labels.process === undefined),
      JSON.stringify(busy),
    );
    await waitFor(async () => (await remainingRows('run_gauges')) === 0, {
      timeoutMs: 30_000,
      what: 'the readings to be handled',
    });
    assert.equal(await distinctPids('0'), 4, 'every process handled readings');
    // Reports come every 500 ms: the counter reaching 96 means every process reported its last set.
    await waitFor(async () => total(await scrape(url), 'txoutbox_custom_readings_total', { handler: 'sensors' }) === 96, {
      what: 'every reading to be reported',
    });

    const settled = await scrape(url);
    assert.deepEqual(gaugeByProcess(settled), { 0: 21, 1: 21, 2: 21, 3: 21 });
    // statsd: the same four numbers, each its own gauge key; none without one.
    const statsdGauges = new Set(
      lines.filter((line) => line.endsWith('|g')).map((line) => line.split(':')[0]?.split('.').slice(3).join('.')),
    );
    assert.deepEqual(
      [...statsdGauges].sort(),
      [0, 1, 2, 3].map((n) => `temperature_celsius.process_${n}`),
    );
    assert.equal(settled.filter((s) => s.name === 'txoutbox_custom_readings_total').length, 1, 'the counter stays one series');

    // SIGKILL one process while idle: its series goes (the replacement has set nothing yet).
    const [victim] = runner.livePids('sensors');
    assert.ok(victim !== undefined);
    process.kill(victim, 'SIGKILL');
    await waitFor(
      async () => {
        const samples = await scrape(url);
        return (
          Object.keys(gaugeByProcess(samples)).length === 3 &&
          total(samples, 'txoutbox_consumer_restarts_total', { consumer: 'sensors' }) === 1 &&
          total(samples, 'txoutbox_consumer_processes', { consumer: 'sensors' }) === 4
        );
      },
      { timeoutMs: 20_000, what: "the killed process's series to go and the process to be replaced" },
    );
    const afterKill = gaugeByProcess(await scrape(url));
    assert.deepEqual(Object.values(afterKill), [21, 21, 21], JSON.stringify(afterKill));

    // New readings: every series, the replacement's included, reads 30; never a fifth number.
    const { rows } = await db.pool.query<{ max: string }>('SELECT max(id)::text AS max FROM handled');
    const lastOfFirst = rows[0]?.max ?? '0';
    await publishReadings(outbox, 96, 30);
    const seen = new Set<string>();
    await waitFor(
      async () => {
        const samples = await scrape(url);
        for (const slot of Object.keys(gaugeByProcess(samples))) seen.add(slot);
        return (await remainingRows('run_gauges')) === 0;
      },
      { timeoutMs: 30_000, intervalMs: 100, what: 'the new readings to be handled' },
    );
    await new Promise((resolve) => setTimeout(resolve, 1100)); // one flush interval and then some
    const final = await scrape(url);
    const finalGauge = gaugeByProcess(final);
    for (const slot of Object.keys(finalGauge)) seen.add(slot);
    assert.ok(
      [...seen].every((slot) => ['0', '1', '2', '3'].includes(slot)),
      `process numbers seen: ${[...seen].join(', ')}`,
    );
    assert.equal(Object.keys(finalGauge).length, await distinctPids(lastOfFirst), JSON.stringify(finalGauge));
    assert.ok(
      Object.values(finalGauge).every((v) => v === 30),
      JSON.stringify(finalGauge),
    );

    const tools = await promtool();
    if (tools.skip === undefined) {
      const response = await fetch(url);
      const { code, output } = await checkMetrics(tools.path, await response.text());
      assert.equal(code, 0, output);
    }

    runner.child.kill('SIGTERM');
    assert.deepEqual(await runner.exited, { code: 0, signal: null });
  });
});
