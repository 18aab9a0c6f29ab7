import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';

import pg from 'pg';
import { Registry } from 'prom-client';

import { ConstantRetry, type Middleware, NoRetry, type OutboxEvent, type OutboxOptions } from '../../src/index.js';
import { prefersOpenMetrics, prometheusMiddleware, prometheusRecorder, renderMetrics } from '../../src/prometheus/index.js';
import { renewalRefusingPool } from '../support/claim-delay-pool.js';
import { useTestDatabase } from '../support/database.js';
import { EventLog } from '../support/events.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

type Labels = Record<string, string>;

/** A failure with its own class: exception_type must be the class name, never the message. */
class PaymentDeclined extends Error {}

/** The labels every consume-side series of the default prefix carries. */
function consumer(handler: string): Labels {
  return { app_name: 'txoutbox', broker: 'outbox', handler };
}

/** The labels of the recorder's per-message series. */
function queued(handler: string, queue: string): Labels {
  return { ...consumer(handler), queue };
}

function publisher(destination: string): Labels {
  return { app_name: 'txoutbox', broker: 'outbox', destination };
}

/**
 * Both seams on ONE fresh registry, on a migrated Outbox of its own table; the EventLog runs beside
 * the Prometheus recorder so a test can wait for an event, then read the registry.
 */
async function instrumented(
  table: string,
  options: Partial<OutboxOptions> = {},
  seam: { prefix?: string; before?: Middleware[] } = {},
) {
  const registry = new Registry();
  const log = new EventLog();
  const names = seam.prefix === undefined ? {} : { prefix: seam.prefix };
  const { outbox } = await migratedOutbox(newOutbox, db.pool, table, {
    recorder: [log.recorder, prometheusRecorder({ registry, ...names })],
    middlewares: [...(seam.before ?? []), prometheusMiddleware({ registry, ...names })],
    ...options,
  });
  return { outbox, log, registry };
}

/** The value of the sample `sample` (e.g. `x_count` of histogram x) with exactly `labels`. */
async function value(registry: Registry, sample: string, labels: Labels): Promise<number | undefined> {
  for (const metric of await registry.getMetricsAsJSON()) {
    for (const entry of metric.values as { value: number; labels: Labels; metricName?: string }[]) {
      if ((entry.metricName ?? metric.name) === sample && isDeepStrictEqual(entry.labels, labels)) return entry.value;
    }
  }
  return undefined;
}

/** Every sample of the family `name`, as `labels → value` (for "nothing else was counted"). */
async function samples(registry: Registry, name: string): Promise<{ labels: Labels; value: number }[]> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  assert.ok(metric !== undefined, `${name} is registered`);
  return (metric.values as { value: number; labels: Labels }[]).map(({ labels, value }) => ({ labels, value }));
}

async function dlqRows(table: string): Promise<{ failure_reason: string; deliveries_count: number }[]> {
  const { rows } = await db.pool.query<{ failure_reason: string; deliveries_count: number }>(
    `SELECT failure_reason, deliveries_count FROM ${table}_dlq ORDER BY id`,
  );
  return rows;
}

/** A promise with its resolve, to hold a handler until the test lets it go. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

const MIDDLEWARE_SERIES = [
  'received_messages_total',
  'received_messages_size_bytes',
  'received_messages_in_process',
  'received_processed_messages_total',
  'received_processed_messages_duration_seconds',
  'received_processed_messages_exceptions_total',
  'published_messages_total',
  'published_messages_duration_seconds',
  'published_messages_exceptions_total',
];
const RECORDER_SERIES = [
  'outbox_fetches_total',
  'outbox_fetched_messages_total',
  'outbox_lease_lost_total',
  'outbox_terminal_total',
  'outbox_retries_total',
  'outbox_dlq_written_total',
  'outbox_drain_timeouts_total',
  'message_age_seconds',
  'outbox_relay_messages_total',
  'outbox_relay_send_duration_seconds',
  'outbox_relay_lag_seconds',
  'outbox_relay_batch_messages',
  'outbox_relay_batch_duration_seconds',
];

describe('both Prometheus seams on one registry', () => {
  test('construction: one Outbox takes both; their names are disjoint, so nothing is registered twice', async () => {
    const registry = new Registry();
    const recorder = prometheusRecorder({ registry });
    const middleware = prometheusMiddleware({ registry });
    assert.equal(middleware.name, 'prometheus');
    assert.deepEqual(
      registry
        .getMetricsAsArray()
        .map((metric) => metric.name)
        .sort(),
      [...MIDDLEWARE_SERIES, ...RECORDER_SERIES].map((name) => `txoutbox_${name}`).sort(),
    );
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'p_construct', { recorder, middlewares: [middleware] });
    assert.equal(await outbox.ping(), true);
  });

  test('ack: received, size, in process, processed{acked}, duration; published{success}; fetches and age', async () => {
    const { outbox, log, registry } = await instrumented('p_ack');
    outbox.subscribe('orders', () => undefined, { name: 'orders-handler', ...FAST_POLL });
    outbox.start();
    await inTransaction(db.pool, (c) => outbox.publish(c, 'orders', { orderId: 7 }));
    await log.waitFor('acked');
    await outbox.stop(); // no event after this: the log and the registry can be compared exactly
    const h = consumer('orders-handler');
    assert.equal(await value(registry, 'txoutbox_received_messages_total', h), 1);
    assert.equal(await value(registry, 'txoutbox_received_messages_size_bytes_count', h), 1);
    assert.equal(await value(registry, 'txoutbox_received_messages_size_bytes_sum', h), 13);
    assert.equal(await value(registry, 'txoutbox_received_messages_in_process', h), 0);
    assert.deepEqual(await samples(registry, 'txoutbox_received_processed_messages_total'), [
      { labels: { ...h, status: 'acked' }, value: 1 },
    ]);
    assert.equal(await value(registry, 'txoutbox_received_processed_messages_duration_seconds_count', h), 1);
    assert.deepEqual(await samples(registry, 'txoutbox_received_processed_messages_exceptions_total'), []);
    assert.deepEqual(await samples(registry, 'txoutbox_published_messages_total'), [
      { labels: { ...publisher('orders'), status: 'success' }, value: 1 },
    ]);
    assert.equal(await value(registry, 'txoutbox_published_messages_duration_seconds_count', publisher('orders')), 1);
    const q = queued('orders-handler', 'orders');
    const fetched = log.of('fetched');
    assert.equal(
      await value(registry, 'txoutbox_outbox_fetches_total', { ...q, non_empty: 'true' }),
      fetched.filter((e) => e.count > 0).length,
    );
    assert.equal(
      await value(registry, 'txoutbox_outbox_fetches_total', { ...q, non_empty: 'false' }),
      fetched.filter((e) => e.count === 0).length,
    );
    assert.equal(await value(registry, 'txoutbox_outbox_fetched_messages_total', q), 1);
    assert.equal(await value(registry, 'txoutbox_message_age_seconds_count', q), 1);
    for (const name of ['retries', 'terminal', 'lease_lost', 'dlq_written', 'drain_timeouts']) {
      assert.deepEqual(await samples(registry, `txoutbox_outbox_${name}_total`), [], name);
    }
    assert.match(
      await registry.getSingleMetricAsString('txoutbox_received_processed_messages_total'),
      /^txoutbox_received_processed_messages_total\{app_name="txoutbox",broker="outbox",handler="orders-handler",status="acked"\} 1$/m,
    );
    assert.equal(await remaining(db.pool, 'orders', 'p_ack'), 0);
  });

  test('two subscribers, two queues, several statuses: each label set is its own series with its own counts', async () => {
    // The seams keep one series object per label set (series.ts); a mix-up between two handlers,
    // queues or statuses would show here as a merged or misplaced count.
    const { outbox, log, registry } = await instrumented('p_many');
    outbox.subscribe('q-one', () => undefined, { name: 'one', ...FAST_POLL });
    outbox.subscribe(
      'q-two',
      (message, ctx) => {
        const { n } = message.body as { n: number };
        if (n % 3 === 0) ctx.reject('no');
        else if (n % 3 === 1 && message.attemptsCount === 0) throw new PaymentDeclined('declined');
      },
      { name: 'two', retry: new ConstantRetry({ delayMs: 10 }), dlq: false, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'q-one', [{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }, { n: 5 }]);
    await publishCommitted(outbox, db.pool, 'q-two', [{ n: 0 }, { n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }, { n: 5 }]);
    // q-one: 5 acked; q-two: 0 and 3 rejected, 1 and 4 thrown once then acked, 2 and 5 acked.
    await log.waitFor('acked', 9);
    await log.waitFor('nacked_terminal', 2);
    await outbox.stop();
    const one = consumer('one');
    const two = consumer('two');
    assert.equal(await value(registry, 'txoutbox_received_messages_total', one), 5);
    assert.equal(await value(registry, 'txoutbox_received_messages_total', two), 8);
    assert.equal(await value(registry, 'txoutbox_received_messages_in_process', one), 0);
    assert.equal(await value(registry, 'txoutbox_received_messages_in_process', two), 0);
    assert.equal(await value(registry, 'txoutbox_received_processed_messages_duration_seconds_count', one), 5);
    assert.equal(await value(registry, 'txoutbox_received_processed_messages_duration_seconds_count', two), 8);
    const processed = await samples(registry, 'txoutbox_received_processed_messages_total');
    assert.deepEqual(
      processed.sort((a, b) => JSON.stringify(a.labels).localeCompare(JSON.stringify(b.labels))),
      [
        { labels: { ...one, status: 'acked' }, value: 5 },
        { labels: { ...two, status: 'acked' }, value: 4 },
        { labels: { ...two, status: 'error' }, value: 2 },
        { labels: { ...two, status: 'rejected' }, value: 2 },
      ],
    );
    assert.deepEqual(await samples(registry, 'txoutbox_received_processed_messages_exceptions_total'), [
      { labels: { ...two, exception_type: 'PaymentDeclined' }, value: 2 },
    ]);
    assert.deepEqual(await samples(registry, 'txoutbox_published_messages_total'), [
      { labels: { ...publisher('q-one'), status: 'success' }, value: 5 },
      { labels: { ...publisher('q-two'), status: 'success' }, value: 6 },
    ]);
    assert.equal(await value(registry, 'txoutbox_message_age_seconds_count', queued('one', 'q-one')), 5);
    assert.equal(await value(registry, 'txoutbox_message_age_seconds_count', queued('two', 'q-two')), 8);
    assert.equal(await value(registry, 'txoutbox_outbox_fetched_messages_total', queued('one', 'q-one')), 5);
    assert.equal(await value(registry, 'txoutbox_outbox_fetched_messages_total', queued('two', 'q-two')), 8);
    assert.deepEqual(await samples(registry, 'txoutbox_outbox_retries_total'), [{ labels: queued('two', 'q-two'), value: 2 }]);
    assert.deepEqual(await samples(registry, 'txoutbox_outbox_terminal_total'), [
      { labels: { ...queued('two', 'q-two'), reason: 'rejected' }, value: 2 },
    ]);
  });

  test('retry: processed{error} then {acked}, exceptions by class name, retries_total; never the message text', async () => {
    const { outbox, log, registry } = await instrumented('p_retry');
    outbox.subscribe(
      'pay',
      (message) => {
        if (message.attemptsCount === 0) throw new PaymentDeclined(`card for ${message.id} declined`);
      },
      { name: 'pay', retry: new ConstantRetry({ delayMs: 10 }), ...FAST_POLL },
    );
    outbox.start();
    const [id] = await publishCommitted(outbox, db.pool, 'pay', ['x']);
    await log.waitFor('acked');
    await outbox.stop();
    const h = consumer('pay');
    assert.equal(await value(registry, 'txoutbox_received_messages_total', h), 2);
    assert.deepEqual(await samples(registry, 'txoutbox_received_processed_messages_total'), [
      { labels: { ...h, status: 'error' }, value: 1 },
      { labels: { ...h, status: 'acked' }, value: 1 },
    ]);
    assert.deepEqual(await samples(registry, 'txoutbox_received_processed_messages_exceptions_total'), [
      { labels: { ...h, exception_type: 'PaymentDeclined' }, value: 1 },
    ]);
    assert.deepEqual(await samples(registry, 'txoutbox_outbox_retries_total'), [{ labels: queued('pay', 'pay'), value: 1 }]);
    assert.deepEqual(await samples(registry, 'txoutbox_outbox_terminal_total'), []);
    const text = await registry.metrics();
    assert.ok(!text.includes('declined'), 'no exception message in any label');
    const labelValues = (await registry.getMetricsAsJSON()).flatMap((metric) =>
      metric.values.flatMap(({ labels }) => Object.entries(labels).filter(([name]) => name !== 'le')),
    );
    assert.ok(labelValues.length > 0 && !labelValues.some(([, labelValue]) => labelValue === id), 'no row id as a label value');
    assert.equal(await remaining(db.pool, 'pay', 'p_retry'), 0);
  });
});

describe('a middleware outside prometheusMiddleware fails the delivery', () => {
  /** Stands in for an application's middleware placed first: it throws after next() on a first delivery. */
  class AuditFailed extends Error {}
  const audit: Middleware = {
    name: 'audit',
    consume: async (ctx, next) => {
      await next();
      if (ctx.deliveriesCount === 1) throw new AuditFailed('audit log unavailable');
    },
  };

  test('its ack became a retry: processed{error}, not {acked}; the redelivery counts acked once', async () => {
    const { outbox, log, registry } = await instrumented('p_outer_fail', {}, { before: [audit] });
    let runs = 0;
    const redelivery = gate();
    outbox.subscribe(
      'audited',
      async (message) => {
        runs += 1;
        // Held until the first run's count is read, so that read cannot see the redelivery's.
        if (message.deliveriesCount > 1) await redelivery.promise;
      },
      { name: 'audited', retry: new ConstantRetry({ delayMs: 10 }), ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'audited', ['x']);
    await log.waitFor('nacked_retried');
    // The retry landed: what processed says about the first run, before the redelivery runs.
    await waitFor(async () => (await samples(registry, 'txoutbox_received_processed_messages_total')).length > 0, {
      what: 'the first run counted',
    });
    const h = consumer('audited');
    assert.deepEqual(
      (await samples(registry, 'txoutbox_received_processed_messages_total')).filter((s) => s.value > 0),
      [{ labels: { ...h, status: 'error' }, value: 1 }],
      'the first run wrote a retry: an error, never an ack',
    );
    redelivery.open();
    await log.waitFor('acked');
    await outbox.stop();
    assert.equal(runs, 2);
    assert.deepEqual(await samples(registry, 'txoutbox_received_processed_messages_total'), [
      { labels: { ...h, status: 'error' }, value: 1 },
      { labels: { ...h, status: 'acked' }, value: 1 },
    ]);
    assert.deepEqual(
      await samples(registry, 'txoutbox_received_processed_messages_exceptions_total'),
      [{ labels: { ...h, exception_type: 'AuditFailed' }, value: 1 }],
      'the error is typed by what failed the delivery',
    );
    assert.deepEqual(await samples(registry, 'txoutbox_outbox_retries_total'), [
      { labels: queued('audited', 'audited'), value: 1 },
    ]);
    assert.equal(await remaining(db.pool, 'audited', 'p_outer_fail'), 0);
  });
  test('transactional: the ack committed inside the chain stays an ack: processed{acked}, no error, no retry', async () => {
    const { outbox, log, registry } = await instrumented('p_outer_fail_tx', {}, { before: [audit] });
    let runs = 0;
    outbox.subscribe(
      'audited-tx',
      () => {
        runs += 1;
      },
      { name: 'audited-tx', transactional: true, retry: new ConstantRetry({ delayMs: 10 }), ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'audited-tx', ['x']);
    await log.waitFor('acked');
    const h = consumer('audited-tx');
    await waitFor(async () => (await samples(registry, 'txoutbox_received_processed_messages_total')).length > 0, {
      what: 'the run counted',
    });
    await outbox.stop();
    assert.equal(runs, 1, 'the commit stood: no redelivery');
    assert.deepEqual(await samples(registry, 'txoutbox_received_processed_messages_total'), [
      { labels: { ...h, status: 'acked' }, value: 1 },
    ]);
    assert.equal(await remaining(db.pool, 'audited-tx', 'p_outer_fail_tx'), 0);
  });
});

describe('terminal reasons, the DLQ and lost leases', () => {
  test('rejected (ctx.reject): processed{rejected}, terminal{rejected}, dlq_written{rejected} = the DLQ row', async () => {
    const { outbox, log, registry } = await instrumented('p_rejected');
    outbox.subscribe(
      'bad',
      (_message, ctx) => {
        ctx.reject('invalid order');
      },
      { name: 'bad', ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'bad', ['x']);
    await log.waitFor('dlq_written');
    await outbox.stop();
    const q = queued('bad', 'bad');
    assert.deepEqual(await samples(registry, 'txoutbox_received_processed_messages_total'), [
      { labels: { ...consumer('bad'), status: 'rejected' }, value: 1 },
    ]);
    assert.deepEqual(
      await samples(registry, 'txoutbox_received_processed_messages_exceptions_total'),
      [],
      'a deliberate reject is not an exception',
    );
    assert.deepEqual(await samples(registry, 'txoutbox_outbox_terminal_total'), [
      { labels: { ...q, reason: 'rejected' }, value: 1 },
    ]);
    assert.deepEqual(await samples(registry, 'txoutbox_outbox_dlq_written_total'), [
      { labels: { ...q, reason: 'rejected' }, value: 1 },
    ]);
    assert.deepEqual(
      (await dlqRows('p_rejected')).map((row) => row.failure_reason),
      ['rejected'],
    );
    assert.equal(await remaining(db.pool, 'bad', 'p_rejected'), 0);
  });

  test('retry_terminal (NoRetry): processed{error}, exceptions{PaymentDeclined}, terminal and DLQ {retry_terminal}', async () => {
    const { outbox, log, registry } = await instrumented('p_retry_terminal');
    outbox.subscribe(
      'once',
      () => {
        throw new PaymentDeclined('no');
      },
      { name: 'once', retry: new NoRetry(), ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'once', ['x']);
    await log.waitFor('dlq_written');
    await outbox.stop();
    const q = queued('once', 'once');
    assert.deepEqual(await samples(registry, 'txoutbox_received_processed_messages_total'), [
      { labels: { ...consumer('once'), status: 'error' }, value: 1 },
    ]);
    assert.deepEqual(await samples(registry, 'txoutbox_received_processed_messages_exceptions_total'), [
      { labels: { ...consumer('once'), exception_type: 'PaymentDeclined' }, value: 1 },
    ]);
    assert.deepEqual(await samples(registry, 'txoutbox_outbox_terminal_total'), [
      { labels: { ...q, reason: 'retry_terminal' }, value: 1 },
    ]);
    assert.deepEqual(await samples(registry, 'txoutbox_outbox_dlq_written_total'), [
      { labels: { ...q, reason: 'retry_terminal' }, value: 1 },
    ]);
    assert.deepEqual(await samples(registry, 'txoutbox_outbox_retries_total'), []);
    assert.deepEqual(
      (await dlqRows('p_retry_terminal')).map((row) => row.failure_reason),
      ['retry_terminal'],
    );
  });

  test('max_deliveries: only the recorder sees it (no handler ran, so no middleware series)', async () => {
    const { outbox, log, registry } = await instrumented('p_maxdel');
    await publishCommitted(outbox, db.pool, 'md', ['x']);
    // As if a delivery had already been claimed once and lost (a crash): the next claim is the 2nd.
    await db.pool.query('UPDATE p_maxdel SET deliveries_count = 1');
    let runs = 0;
    outbox.subscribe(
      'md',
      () => {
        runs += 1;
      },
      { name: 'md', maxDeliveries: 1, ...FAST_POLL },
    );
    outbox.start();
    await log.waitFor('dlq_written');
    await outbox.stop();
    assert.equal(runs, 0);
    const q = queued('md', 'md');
    assert.deepEqual(await samples(registry, 'txoutbox_outbox_terminal_total'), [
      { labels: { ...q, reason: 'max_deliveries' }, value: 1 },
    ]);
    assert.deepEqual(await samples(registry, 'txoutbox_outbox_dlq_written_total'), [
      { labels: { ...q, reason: 'max_deliveries' }, value: 1 },
    ]);
    assert.equal(await value(registry, 'txoutbox_outbox_fetched_messages_total', q), 1);
    assert.deepEqual(await samples(registry, 'txoutbox_received_messages_total'), []);
    assert.deepEqual(await samples(registry, 'txoutbox_received_processed_messages_total'), []);
    assert.deepEqual(await samples(registry, 'txoutbox_message_age_seconds'), [], 'never dispatched');
    assert.deepEqual(await dlqRows('p_maxdel'), [{ failure_reason: 'max_deliveries', deliveries_count: 2 }]);
    assert.equal(await remaining(db.pool, 'md', 'p_maxdel'), 0);
  });

  for (const phase of ['terminal', 'retry'] as const) {
    test(`lease lost in the ${phase} phase: lease_lost{phase="${phase}"}, and no ${phase === 'retry' ? 'retry' : 'terminal'} is counted that did not land`, async () => {
      const table = `p_lease_${phase}`;
      const otherPool = new pg.Pool({ connectionString: db.url, max: 4 });
      db.onCleanup(() => otherPool.end());
      // Its renewals fail, so the gated run outlives its lease (not timed out at expiry).
      const stalePool = renewalRefusingPool(db.url);
      db.onCleanup(() => stalePool.end());
      const stale = await instrumented(table, { pool: stalePool });
      const fresh = await migratedOutbox(newOutbox, otherPool, table);
      const firstRun = gate();
      stale.outbox.subscribe(
        'fenced',
        async (message) => {
          if (message.deliveriesCount > 1) return;
          await firstRun.promise; // outlives its 300 ms lease
          if (phase === 'retry') throw new PaymentDeclined('late');
        },
        {
          name: 'fenced',
          leaseTtlMs: 300,
          leaseRenewIntervalMs: 100,
          concurrency: 1,
          fetchBatchSize: 1,
          retry: new ConstantRetry({ delayMs: 60_000 }),
          ...FAST_POLL,
        },
      );
      stale.outbox.start();
      await publishCommitted(stale.outbox, db.pool, 'fenced', ['x']);
      await stale.log.waitFor('dispatched');
      fresh.outbox.subscribe('fenced', () => undefined, { leaseTtlMs: 300, ...FAST_POLL });
      fresh.outbox.start();
      await waitFor(async () => (await remaining(db.pool, 'fenced', table)) === 0, { what: 'the re-claimed delivery acked' });
      firstRun.open();
      await stale.log.waitFor('lease_lost');
      await stale.outbox.stop();
      const q = queued('fenced', 'fenced');
      assert.deepEqual(await samples(stale.registry, 'txoutbox_outbox_lease_lost_total'), [
        { labels: { ...q, phase }, value: 1 },
      ]);
      assert.deepEqual(await samples(stale.registry, 'txoutbox_outbox_retries_total'), [], 'the stale retry did not land');
      assert.deepEqual(await samples(stale.registry, 'txoutbox_outbox_terminal_total'), []);
      // What the database did, not what the handler returned: a fenced-off ack is not throughput.
      assert.deepEqual(
        await samples(stale.registry, 'txoutbox_received_processed_messages_total'),
        [{ labels: { ...consumer('fenced'), status: 'error' }, value: 1 }],
        'the run whose outcome was fenced off counts as an error',
      );
      assert.equal(await remaining(db.pool, 'fenced', table), 0);
    });
  }

  test('drain timeout: drain_timeouts_total{app_name,broker,handler}; the in-process gauge returns to 0', async () => {
    const { outbox, log, registry } = await instrumented('p_drain', { gracefulTimeoutMs: 200 });
    outbox.subscribe(
      'wedged',
      async (_message, ctx) => {
        await new Promise<void>((resolve) => {
          ctx.signal.addEventListener('abort', () => {
            resolve();
          });
        });
      },
      { name: 'wedged', leaseTtlMs: 5_000, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'wedged', ['stuck']);
    await log.waitFor('dispatched');
    assert.equal(await value(registry, 'txoutbox_received_messages_in_process', consumer('wedged')), 1);
    await outbox.stop();
    assert.deepEqual(await samples(registry, 'txoutbox_outbox_drain_timeouts_total'), [{ labels: consumer('wedged'), value: 1 }]);
    await waitFor(async () => (await value(registry, 'txoutbox_received_messages_in_process', consumer('wedged'))) === 0, {
      what: 'the aborted handler left the gauge',
    });
    assert.equal(await remaining(db.pool, 'wedged', 'p_drain'), 1, 'the row keeps its lease for redelivery');
  });

  for (const lease of ['token', 'row-lock'] as const) {
    test(`drain timeout of a handler that ignores its signal and never settles (${lease}): the in-process gauge still returns to 0`, async () => {
      // Reported (review): the drain timeout only aborted the signal, so a handler that never
      // settles kept its delivery open: in_process stayed at 1 (and its span open) on a registry
      // that outlives the Outbox.
      const table = `p_drain_never_${lease.replace('-', '_')}`;
      const { outbox, log, registry } = await instrumented(table, { gracefulTimeoutMs: 200 });
      outbox.subscribe('never', () => new Promise<void>(() => undefined), {
        name: 'never',
        leaseTtlMs: 5_000,
        lease,
        ...FAST_POLL,
      });
      outbox.start();
      await publishCommitted(outbox, db.pool, 'never', ['stuck']);
      await log.waitFor('dispatched');
      await outbox.stop();
      await waitFor(async () => (await value(registry, 'txoutbox_received_messages_in_process', consumer('never'))) === 0, {
        what: 'the never-settling handler left the gauge',
      });
      assert.equal(await remaining(db.pool, 'never', table), 1, 'the row stays, for redelivery');
    });
  }

  test('an empty fetch: fetches_total{non_empty="false"} for every one, and 0 fetched messages', async () => {
    const { outbox, log, registry } = await instrumented('p_empty');
    outbox.subscribe('idle', () => undefined, { name: 'idle', ...FAST_POLL });
    outbox.start();
    await log.waitFor('fetched', 2);
    await outbox.stop();
    const q = queued('idle', 'idle');
    assert.deepEqual(await samples(registry, 'txoutbox_outbox_fetches_total'), [
      { labels: { ...q, non_empty: 'false' }, value: log.of('fetched').length },
    ]);
    assert.deepEqual(await samples(registry, 'txoutbox_outbox_fetched_messages_total'), [{ labels: q, value: 0 }]);
  });
});

describe('publishing', () => {
  test('publish ok: success counts rows that landed (a batch counts N, a taken timerId counts 0)', async () => {
    const { outbox, registry } = await instrumented('p_publish');
    await publishCommitted(outbox, db.pool, 'batch', [1, 2, 3]);
    assert.notEqual(await inTransaction(db.pool, (c) => outbox.publish(c, 'timers', 'a', { timerId: 't1' })), null);
    assert.equal(await inTransaction(db.pool, (c) => outbox.publish(c, 'timers', 'b', { timerId: 't1' })), null);
    assert.deepEqual(await samples(registry, 'txoutbox_published_messages_total'), [
      { labels: { ...publisher('batch'), status: 'success' }, value: 3 },
      { labels: { ...publisher('timers'), status: 'success' }, value: 1 },
    ]);
    assert.equal(
      await value(registry, 'txoutbox_published_messages_duration_seconds_count', publisher('timers')),
      2,
      'every call',
    );
    assert.deepEqual(await samples(registry, 'txoutbox_published_messages_exceptions_total'), []);
    assert.equal(await remaining(db.pool, 'batch', 'p_publish'), 3);
    assert.equal(await remaining(db.pool, 'timers', 'p_publish'), 1);
  });

  test('publish error: an INSERT into a renamed table counts every body as error, by exception class', async () => {
    const { outbox, registry } = await instrumented('p_publish_error');
    await db.pool.query('ALTER TABLE p_publish_error RENAME TO p_publish_error_moved');
    await assert.rejects(
      inTransaction(db.pool, (c) => outbox.publish(c, 'orders', 'x')),
      /does not exist/,
    );
    await assert.rejects(
      inTransaction(db.pool, (c) => outbox.publishBatch(c, 'orders', [1, 2, 3])),
      /does not exist/,
    );
    assert.deepEqual(await samples(registry, 'txoutbox_published_messages_total'), [
      { labels: { ...publisher('orders'), status: 'error' }, value: 4 },
    ]);
    assert.deepEqual(await samples(registry, 'txoutbox_published_messages_exceptions_total'), [
      // The table is gone: the producer names it (a schema behind the code), not the driver's DatabaseError.
      { labels: { ...publisher('orders'), exception_type: 'SchemaNotMigratedError' }, value: 2 },
    ]);
    assert.equal(await value(registry, 'txoutbox_published_messages_duration_seconds_count', publisher('orders')), 2);
    const { rows } = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM p_publish_error_moved');
    assert.equal(rows[0]?.n, '0');
  });
});

describe('FastStream compatibility, custom stats, cardinality', () => {
  test("prefix 'faststream' gives FastStream's exact names, types, label names and buckets", async () => {
    const { outbox, log, registry } = await instrumented('p_faststream', {}, { prefix: 'faststream' });
    outbox.subscribe('orders', () => undefined, { name: 'orders', ...FAST_POLL });
    outbox.start();
    await publishCommitted(outbox, db.pool, 'orders', [{ orderId: 1 }]);
    await log.waitFor('acked');
    await outbox.stop();
    // faststream/prometheus/container.py
    const expected: [string, string, string[]][] = [
      ['faststream_received_messages_total', 'counter', ['app_name', 'broker', 'handler']],
      ['faststream_received_messages_size_bytes', 'histogram', ['app_name', 'broker', 'handler']],
      ['faststream_received_messages_in_process', 'gauge', ['app_name', 'broker', 'handler']],
      ['faststream_received_processed_messages_total', 'counter', ['app_name', 'broker', 'handler', 'status']],
      ['faststream_received_processed_messages_duration_seconds', 'histogram', ['app_name', 'broker', 'handler']],
      ['faststream_received_processed_messages_exceptions_total', 'counter', ['app_name', 'broker', 'handler', 'exception_type']],
      ['faststream_published_messages_total', 'counter', ['app_name', 'broker', 'destination', 'status']],
      ['faststream_published_messages_duration_seconds', 'histogram', ['app_name', 'broker', 'destination']],
      ['faststream_published_messages_exceptions_total', 'counter', ['app_name', 'broker', 'destination', 'exception_type']],
    ];
    for (const [name, type, labelNames] of expected) {
      const metric = registry.getSingleMetric(name) as unknown as { type: string; labelNames: string[] } | undefined;
      assert.ok(metric !== undefined, name);
      assert.equal(metric.type, type, name);
      assert.deepEqual(metric.labelNames, labelNames, name);
    }
    const text = await registry.metrics();
    assert.match(text, /^faststream_received_messages_total\{app_name="faststream",broker="outbox",handler="orders"\} 1$/m);
    assert.match(
      text,
      /^faststream_received_processed_messages_total\{app_name="faststream",broker="outbox",handler="orders",status="acked"\} 1$/m,
    );
    assert.match(
      text,
      /^faststream_published_messages_total\{app_name="faststream",broker="outbox",destination="orders",status="success"\} 1$/m,
    );
    const bounds = (family: string) =>
      [...text.matchAll(new RegExp(`^${family}_bucket\\{le="([^"]+)",app_name="faststream"`, 'gm'))].map((m) => m[1]);
    assert.deepEqual(bounds('faststream_received_messages_size_bytes'), [
      ...[16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216].map(String),
      '+Inf',
    ]);
    const durations = [
      '0.005',
      '0.01',
      '0.025',
      '0.05',
      '0.075',
      '0.1',
      '0.25',
      '0.5',
      '0.75',
      '1',
      '2.5',
      '5',
      '7.5',
      '10',
      '+Inf',
    ];
    assert.deepEqual(bounds('faststream_received_processed_messages_duration_seconds'), durations);
    assert.deepEqual(bounds('faststream_published_messages_duration_seconds'), durations);
    assert.ok(
      registry.getMetricsAsArray().every((metric) => metric.name.startsWith('faststream_')),
      'the recorder follows the prefix too',
    );
  });

  test('custom stats: incr/set/observe/time become <prefix>_custom_<sanitised key> series labelled by handler', async () => {
    const { outbox, log, registry } = await instrumented('p_custom');
    outbox.subscribe(
      'reports',
      async (_message, ctx) => {
        ctx.stats.incr('db.query');
        ctx.stats.incr('db.query', 2);
        ctx.stats.set('queue-depth', 5);
        ctx.stats.observe('fetch time', 0.2);
        await ctx.stats.time('render', () => Promise.resolve());
      },
      { name: 'reports', ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'reports', ['x']);
    await log.waitFor('acked');
    await outbox.stop();
    const h = consumer('reports');
    assert.equal(await value(registry, 'txoutbox_custom_db_query_total', h), 3);
    assert.equal(await value(registry, 'txoutbox_custom_queue_depth', h), 5);
    assert.equal(await value(registry, 'txoutbox_custom_fetch_time_seconds_count', h), 1);
    assert.equal(await value(registry, 'txoutbox_custom_fetch_time_seconds_sum', h), 0.2);
    assert.equal(await value(registry, 'txoutbox_custom_render_seconds_count', h), 1);
    assert.match(
      await registry.getSingleMetricAsString('txoutbox_custom_db_query_total'),
      /^# TYPE txoutbox_custom_db_query_total counter$/m,
    );
    assert.match(
      await registry.getSingleMetricAsString('txoutbox_custom_queue_depth'),
      /^# TYPE txoutbox_custom_queue_depth gauge$/m,
    );
  });

  test('1,000 messages with distinct ids and correlation ids: label sets stay bounded, no id in any label', async () => {
    const { outbox, log, registry } = await instrumented('p_cardinality');
    const ids = new Set<string>();
    outbox.subscribe<{ n: number }>(
      'bulk',
      (message, ctx) => {
        ids.add(message.id);
        ids.add(message.correlationId);
        ctx.stats.incr('handled');
        if (message.body.n % 10 === 0 && message.attemptsCount === 0) {
          throw new PaymentDeclined(`order ${message.id} (${message.correlationId}) declined`);
        }
      },
      { name: 'bulk', concurrency: 16, fetchBatchSize: 100, retry: new ConstantRetry({ delayMs: 1 }), ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(
      outbox,
      db.pool,
      'bulk',
      Array.from({ length: 1000 }, (_, n) => ({ n })),
    );
    await waitFor(() => log.of('acked').length === 1000, { timeoutMs: 60_000, what: '1000 acked' });
    await outbox.stop();
    assert.equal(ids.size, 2000, 'every message had its own id and correlation id');
    assert.equal(await remaining(db.pool, 'bulk', 'p_cardinality'), 0);

    let series = 0;
    for (const metric of await registry.getMetricsAsJSON()) {
      const sets = new Set<string>();
      for (const { labels } of metric.values as { labels: Labels }[]) {
        const rest = Object.fromEntries(Object.entries(labels).filter(([name]) => name !== 'le'));
        sets.add(JSON.stringify(rest));
        for (const labelValue of Object.values(rest)) assert.ok(!ids.has(labelValue), `${metric.name}: ${labelValue}`);
      }
      assert.ok(sets.size <= 2, `${metric.name} has ${sets.size} label sets`);
      series += sets.size;
    }
    assert.ok(series <= 25, `${series} series in all`);
    const h = consumer('bulk');
    assert.equal(await value(registry, 'txoutbox_received_messages_total', h), 1100);
    assert.equal(await value(registry, 'txoutbox_received_processed_messages_total', { ...h, status: 'acked' }), 1000);
    assert.equal(await value(registry, 'txoutbox_received_processed_messages_total', { ...h, status: 'error' }), 100);
    assert.equal(await value(registry, 'txoutbox_outbox_retries_total', queued('bulk', 'bulk')), 100);
    assert.equal(await value(registry, 'txoutbox_custom_handled_total', h), 1100);
    assert.equal(await value(registry, 'txoutbox_published_messages_total', { ...publisher('bulk'), status: 'success' }), 1000);
    assert.ok(!(await registry.metrics()).includes('declined'));
  });
});

describe('exemplars and the two exposition formats', () => {
  const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
  /** Stands in for a tracing middleware: sets the trace id the metrics middleware reads after next(). */
  const tracing: Middleware = {
    name: 'test-tracing',
    consume: async (ctx, next) => {
      ctx.traceId = TRACE_ID;
      await next();
    },
    publish: async (ctx, next) => {
      ctx.traceId = TRACE_ID;
      await next();
    },
  };

  test('OpenMetrics carries a { trace_id } exemplar; Prometheus text from the same registry is unchanged', async () => {
    const { outbox, log, registry } = await instrumented('p_exemplar', {}, { before: [tracing] });
    outbox.subscribe('traced', () => undefined, { name: 'traced', ...FAST_POLL });
    outbox.start();
    await publishCommitted(outbox, db.pool, 'traced', ['x']);
    await log.waitFor('acked');
    await outbox.stop();

    const openMetrics = await renderMetrics(registry, true);
    const exemplar = `# \\{trace_id="${TRACE_ID}"\\} [0-9.e-]+ [0-9.]+$`;
    assert.match(
      openMetrics,
      new RegExp(
        `^txoutbox_received_processed_messages_duration_seconds_bucket\\{le="[^"]+",app_name="txoutbox",broker="outbox",handler="traced"\\} 1 ${exemplar}`,
        'm',
      ),
    );
    assert.match(
      openMetrics,
      new RegExp(
        `^txoutbox_published_messages_duration_seconds_bucket\\{le="[^"]+",app_name="txoutbox",broker="outbox",destination="traced"\\} 1 ${exemplar}`,
        'm',
      ),
    );
    assert.match(
      openMetrics,
      /^# TYPE txoutbox_received_messages counter$/m,
      'OpenMetrics names the counter family without _total',
    );
    assert.match(openMetrics, /^txoutbox_received_messages_total\{/m);
    assert.ok(openMetrics.endsWith('# EOF\n'));

    const text = await renderMetrics(registry, false);
    assert.ok(!text.includes('trace_id'), 'Prometheus text has no exemplars');
    assert.equal(text, await registry.metrics(), "the same bytes as the registry's own output");
    assert.equal(registry.contentType, Registry.PROMETHEUS_CONTENT_TYPE, 'the registry was not switched');
    assert.match(
      await registry.getSingleMetricAsString('txoutbox_received_messages_total'),
      /^# TYPE txoutbox_received_messages_total counter$/m,
      'nor were its counters renamed (prom-client does that when it renders OpenMetrics itself)',
    );
  });

  test('without a trace id there is no exemplar; an OpenMetrics-typed registry serves both formats too', async () => {
    const registry = new Registry<'application/openmetrics-text; version=1.0.0; charset=utf-8'>();
    registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    const middleware = prometheusMiddleware({ registry });
    const ctx = {
      subscriber: 'h',
      queue: 'q',
      messageId: '1',
      correlationId: 'c',
      headers: {},
      sizeBytes: 3,
      deliveriesCount: 1,
      createdAt: new Date(),
      traceId: undefined,
      written: Promise.resolve('written' as const),
    };
    await middleware.consume!(ctx, () =>
      Promise.resolve({ status: 'acked', error: undefined, durationSeconds: 0, outcome: { kind: 'ack' } }),
    );
    await middleware.consume!({ ...ctx, traceId: 'x'.repeat(200) }, () =>
      Promise.resolve({ status: 'acked', error: undefined, durationSeconds: 0, outcome: { kind: 'ack' } }),
    );
    const openMetrics = await renderMetrics(registry, true);
    assert.ok(!openMetrics.includes('trace_id'), 'no exemplar without a (plausible) trace id');
    assert.match(
      openMetrics,
      /^txoutbox_received_processed_messages_total\{app_name="txoutbox",broker="outbox",handler="h",status="acked"\} 2$/m,
    );
    const text = await renderMetrics(registry, false);
    assert.match(text, /^# TYPE txoutbox_received_processed_messages_total counter$/m);
    assert.ok(!text.includes('# EOF'));
  });

  test("a scraper's Accept header picks the format", () => {
    const prometheus =
      'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';
    assert.equal(prefersOpenMetrics(prometheus), true);
    assert.equal(prefersOpenMetrics('text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5'), false);
    assert.equal(prefersOpenMetrics('*/*'), false);
    assert.equal(prefersOpenMetrics(undefined), false);
    assert.equal(prefersOpenMetrics('application/openmetrics-text; version=1.0.0; q=0'), false);
  });

  test('the recorder ignores event types it does not know', async () => {
    const registry = new Registry();
    const recorder = prometheusRecorder({ registry });
    const before = await registry.metrics();
    assert.doesNotThrow(() => {
      recorder({ type: 'rebalanced', queue: 'q', subscriber: 's' } as unknown as OutboxEvent);
    });
    assert.equal(await registry.metrics(), before);
  });
});
