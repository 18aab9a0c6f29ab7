import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';

import pg from 'pg';
import { Counter, Registry } from 'prom-client';

import { InvalidOptionError, type Outbox } from '../../src/index.js';
import { queueStateCollector } from '../../src/prometheus/index.js';
import { QueueStateReader } from '../../src/prometheus/queue-state-reader.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

type Labels = Record<string, string>;
const ids = { app_name: 'txoutbox', broker: 'outbox' };

async function value(registry: Registry, name: string, labels: Labels): Promise<number | undefined> {
  for (const metric of await registry.getMetricsAsJSON()) {
    if (metric.name !== name) continue;
    for (const entry of metric.values as { value: number; labels: Labels }[]) {
      if (isDeepStrictEqual(entry.labels, labels)) return entry.value;
    }
  }
  return undefined;
}

/** Every series of `name` as `labels → value`, sorted by their labels. */
async function series(registry: Registry, name: string): Promise<Map<string, number>> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  assert.ok(metric !== undefined, `${name} is registered`);
  return new Map((metric.values as { value: number; labels: Labels }[]).map((v) => [JSON.stringify(v.labels), v.value]));
}

async function migrated(table: string, pool: pg.Pool = db.pool): Promise<Outbox> {
  const outbox = newOutbox({ pool, table });
  await outbox.migrate();
  return outbox;
}

/** Inserts `n` rows in one state, directly: the collector must agree with the table, however rows got there. */
async function insert(
  table: string,
  queue: string,
  n: number,
  state: 'ready' | 'scheduled' | 'leased',
  readySince = "now() - interval '1 second'",
): Promise<void> {
  const next = state === 'scheduled' ? "now() + interval '1 hour'" : readySince;
  const lease = state === 'leased' ? 'gen_random_uuid(), now()' : 'NULL, NULL';
  await db.pool.query(
    `INSERT INTO ${table} (queue, payload, next_attempt_at, acquired_token, acquired_at)
     SELECT $1, '\\x00', ${next}, ${lease} FROM generate_series(1, $2)`,
    [queue, n],
  );
}

async function insertDlq(table: string, queue: string, n: number): Promise<void> {
  await db.pool.query(
    `INSERT INTO ${table}_dlq (original_id, queue, payload, created_at, attempts_count, deliveries_count, failure_reason)
     SELECT g, $1, '\\x00', now(), 1, 1, 'rejected' FROM generate_series(1, $2) g`,
    [queue, n],
  );
}

/** What the table says, counted the slow way. */
async function truth(table: string) {
  const { rows } = await db.pool.query<{ queue: string; state: string; n: number }>(
    `SELECT queue, CASE WHEN acquired_token IS NOT NULL THEN 'leased' WHEN next_attempt_at <= now() THEN 'ready' ELSE 'scheduled' END AS state,
            count(*)::int AS n
     FROM ${table} GROUP BY 1, 2`,
  );
  const { rows: dlq } = await db.pool.query<{ queue: string; n: number }>(
    `SELECT queue, count(*)::int AS n FROM ${table}_dlq GROUP BY 1`,
  );
  const { rows: ages } = await db.pool.query<{ queue: string; age: number }>(
    `SELECT queue, extract(epoch FROM now() - min(next_attempt_at))::float8 AS age
     FROM ${table} WHERE acquired_token IS NULL AND next_attempt_at <= now() GROUP BY 1`,
  );
  return { rows, dlq, ages };
}

describe('queueStateCollector', () => {
  test('ready, scheduled, leased, oldest ready age and DLQ depth per queue match the table', async () => {
    const table = 'qs_numbers';
    const outbox = await migrated(table);
    await insert(table, 'a', 3, 'ready', "now() - interval '30 seconds'");
    await insert(table, 'a', 4, 'ready');
    await insert(table, 'a', 2, 'scheduled');
    await insert(table, 'a', 1, 'leased');
    await insert(table, 'b', 1, 'ready', "now() - interval '5 seconds'");
    await insert(table, 'b', 2, 'leased');
    await insert(table, 'c', 5, 'scheduled');
    await insert(table, 'd', 6, 'leased');
    await insertDlq(table, 'a', 2);
    await insertDlq(table, 'e', 3); // a queue that only has dead letters
    const registry = new Registry();
    const collector = queueStateCollector(outbox, { registry });

    const depth = await series(registry, 'txoutbox_queue_messages');
    const { rows, dlq, ages } = await truth(table);
    const queues = ['a', 'b', 'c', 'd', 'e'];
    assert.equal(depth.size, queues.length * 3, 'one series per queue and state');
    for (const queue of queues) {
      for (const state of ['ready', 'scheduled', 'leased']) {
        const expected = rows.find((r) => r.queue === queue && r.state === state)?.n ?? 0;
        assert.equal(depth.get(JSON.stringify({ ...ids, queue, state })), expected, `${queue} ${state}`);
        assert.equal(await value(registry, 'txoutbox_queue_messages_estimated', { ...ids, queue, state }), 0);
      }
      assert.equal(
        await value(registry, 'txoutbox_queue_dlq_messages', { ...ids, queue }),
        dlq.find((r) => r.queue === queue)?.n ?? 0,
        `${queue} dlq`,
      );
      const age = await value(registry, 'txoutbox_queue_oldest_ready_age_seconds', { ...ids, queue });
      const expectedAge = ages.find((r) => r.queue === queue)?.age ?? 0;
      assert.ok(age !== undefined && Math.abs(age - expectedAge) < 2.5, `${queue} age ${age} ≈ ${expectedAge}`);
    }
    assert.deepEqual(
      [rows.find((r) => r.queue === 'a' && r.state === 'ready')?.n, (ages.find((r) => r.queue === 'a')?.age ?? 0) >= 30],
      [7, true],
    );
    assert.equal(await value(registry, 'txoutbox_queue_state_up', ids), 1);
    assert.equal(await value(registry, 'txoutbox_queue_state_errors_total', ids), 0);
    const duration = await value(registry, 'txoutbox_queue_state_read_duration_seconds', ids);
    assert.ok(duration !== undefined && duration > 0 && duration < 5, `read took ${duration} s`);
    assert.deepEqual(collector.metricNames, [
      'txoutbox_queue_messages',
      'txoutbox_queue_oldest_ready_age_seconds',
      'txoutbox_queue_dlq_messages',
      'txoutbox_queue_paused',
      'txoutbox_queue_messages_estimated',
      'txoutbox_queue_state_up',
      'txoutbox_queue_state_read_duration_seconds',
      'txoutbox_queue_state_leader',
      'txoutbox_queue_state_errors_total',
    ]);
  });

  test('one query per cache window, shared by concurrent scrapes; a drained queue reports 0, not nothing', async () => {
    const table = 'qs_cache';
    const pool = new pg.Pool({ connectionString: db.url, max: 4 });
    pool.on('error', () => undefined); // see test/support/database.ts
    db.onCleanup(() => pool.end());
    const outbox = await migrated(table, pool);
    let connects = 0;
    const connect = pool.connect.bind(pool);
    pool.connect = (() => {
      connects += 1;
      return connect();
    }) as typeof pool.connect;
    await insert(table, 'jobs', 2, 'ready');
    const registry = new Registry();
    queueStateCollector(outbox, { registry, cacheMs: 1000 });
    const ready = () => value(registry, 'txoutbox_queue_messages', { ...ids, queue: 'jobs', state: 'ready' });

    const before = connects;
    const scrapes = await Promise.all(Array.from({ length: 5 }, () => registry.metrics()));
    assert.equal(connects - before, 1, 'five concurrent scrapes, seven metrics each: one read');
    assert.ok(scrapes.every((text) => text === scrapes[0]));
    assert.equal(await ready(), 2);

    await insert(table, 'jobs', 3, 'ready');
    assert.equal(await ready(), 2, 'inside the window: the cached read');
    assert.equal(connects - before, 1);
    await waitFor(async () => (await ready()) === 5, { timeoutMs: 5_000, intervalMs: 100, what: 'the next window reads 5' });
    assert.ok(connects - before <= 3, `${connects - before} reads over ~1 s of polling every 100 ms`);

    await db.pool.query(`DELETE FROM ${table}`);
    await waitFor(async () => (await ready()) === 0, { timeoutMs: 5_000, intervalMs: 100, what: 'the drained queue reads 0' });
  });

  test('above exactCountLimit the count is the planner estimate, flagged by queue_messages_estimated', async () => {
    const table = 'qs_estimate';
    const outbox = await migrated(table);
    await insert(table, 'big', 5000, 'ready');
    await insert(table, 'big', 3, 'leased');
    await insert(table, 'small', 4, 'ready');
    await insertDlq(table, 'big', 400);
    await db.pool.query(`ANALYZE ${table}; ANALYZE ${table}_dlq`);
    const registry = new Registry();
    queueStateCollector(outbox, { registry, exactCountLimit: 10 });
    const at = (name: string, labels: Labels) => value(registry, name, { ...ids, ...labels });

    const bigReady = await at('txoutbox_queue_messages', { queue: 'big', state: 'ready' });
    assert.ok(bigReady !== undefined && bigReady >= 4000 && bigReady <= 6000, `estimate ${bigReady} ≈ 5000`);
    assert.equal(await at('txoutbox_queue_messages_estimated', { queue: 'big', state: 'ready' }), 1);
    const bigDlq = await at('txoutbox_queue_dlq_messages', { queue: 'big' });
    assert.ok(bigDlq !== undefined && bigDlq >= 300 && bigDlq <= 500, `dlq estimate ${bigDlq} ≈ 400`);
    assert.equal(await at('txoutbox_queue_messages_estimated', { queue: 'big', state: 'dlq' }), 1);
    // Under the limit: exact, and flagged so.
    assert.equal(await at('txoutbox_queue_messages', { queue: 'big', state: 'leased' }), 3);
    assert.equal(await at('txoutbox_queue_messages_estimated', { queue: 'big', state: 'leased' }), 0);
    assert.equal(await at('txoutbox_queue_messages', { queue: 'small', state: 'ready' }), 4);
    assert.equal(await at('txoutbox_queue_messages_estimated', { queue: 'small', state: 'ready' }), 0);
  });

  test('an estimate is never below the cap, even with statistics that say the table is empty', async () => {
    const table = 'qs_stale_stats';
    const outbox = await migrated(table);
    await db.pool.query(`ANALYZE ${table}`); // statistics of the empty table
    await insert(table, 'burst', 50, 'ready');
    const registry = new Registry();
    queueStateCollector(outbox, { registry, exactCountLimit: 20 });
    const n = await value(registry, 'txoutbox_queue_messages', { ...ids, queue: 'burst', state: 'ready' });
    assert.ok(n !== undefined && n >= 21, `at least the 21 rows counted, got ${n}`);
  });

  test('a database error fails neither the scrape nor the other metrics: up 0, errors counted once per read, logged once', async () => {
    const outbox = newOutbox({ pool: db.pool, table: 'qs_not_migrated' });
    const registry = new Registry();
    const other = new Counter({ name: 'app_requests_total', help: 'another library', registers: [registry] });
    other.inc(3);
    queueStateCollector(outbox, { registry });
    const text = await registry.metrics();
    assert.match(text, /^app_requests_total 3$/m);
    assert.match(text, /^txoutbox_queue_state_up\{app_name="txoutbox",broker="outbox"\} 0$/m);
    assert.match(text, /^txoutbox_queue_state_errors_total\{app_name="txoutbox",broker="outbox"\} 1$/m);
    assert.doesNotMatch(text, /^txoutbox_queue_messages\{/m);
    await registry.metrics(); // same window: the same failed read, not a second error
    assert.equal(await value(registry, 'txoutbox_queue_state_errors_total', ids), 1);
    assert.deepEqual(
      newOutbox.logger.entries.filter((e) => e.message.startsWith('queue-state metrics')).map((e) => e.level),
      ['warn'],
    );
    await waitFor(async () => (await value(registry, 'txoutbox_queue_state_errors_total', ids)) === 2, {
      timeoutMs: 5_000,
      intervalMs: 200,
      what: 'the next window reads (and fails) again',
    });
    assert.equal(newOutbox.logger.messages('warn').filter((m) => m.startsWith('queue-state metrics')).length, 1);

    await outbox.migrate();
    await waitFor(async () => (await value(registry, 'txoutbox_queue_state_up', ids)) === 1, {
      timeoutMs: 5_000,
      intervalMs: 200,
      what: 'up again once the table exists',
    });
    assert.ok(newOutbox.logger.messages('info').includes('queue-state metrics: the database read succeeds again'));
    // Failed reads dropped their connection instead of returning an aborted transaction to the pool.
    const { rows } = await db.pool.query<{ one: number }>('SELECT 1 AS one');
    assert.equal(rows[0]?.one, 1);
  });

  test('a stopped Outbox reads as down; maxQueues bounds the queues reported', async () => {
    const table = 'qs_bounds';
    const outbox = await migrated(table);
    for (const queue of ['q1', 'q2', 'q3', 'q4', 'q5']) await insert(table, queue, 1, 'ready');
    const registry = new Registry();
    queueStateCollector(outbox, { registry, maxQueues: 3, appName: 'bounded' });
    const depth = await series(registry, 'txoutbox_queue_messages');
    assert.deepEqual([...new Set([...depth.keys()].map((k) => (JSON.parse(k) as Labels).queue))], ['q1', 'q2', 'q3']);

    const other = await migrated('qs_bounds_other');
    const registry2 = new Registry();
    queueStateCollector(other, { registry: registry2 });
    await other.stop();
    assert.equal(await value(registry2, 'txoutbox_queue_state_up', ids), 0);
  });

  test('more queues than maxQueues: the most lagged are reported, whatever their names (issue 13, item 10)', async () => {
    const table = 'qs_rank';
    const outbox = await migrated(table);
    // Early names with rows but nothing overdue; two backlogged queues that sort last by name.
    for (const queue of ['a', 'b', 'c', 'd']) await insert(table, queue, 1, 'scheduled');
    await insert(table, 'e', 1, 'leased');
    await insert(table, 'y_lagging', 2, 'ready', "now() - interval '10 seconds'");
    await insert(table, 'zz_backlog', 5, 'ready', "now() - interval '60 seconds'");
    const registry = new Registry();
    queueStateCollector(outbox, { registry, maxQueues: 3 });

    const reported = [...(await series(registry, 'txoutbox_queue_oldest_ready_age_seconds')).keys()].map(
      (k) => (JSON.parse(k) as Labels).queue,
    );
    // Oldest ready row first, then queues with rows by name: the lag alert sees the backlog.
    assert.deepEqual(reported.sort(), ['a', 'y_lagging', 'zz_backlog']);
    assert.equal(await value(registry, 'txoutbox_queue_messages', { ...ids, queue: 'zz_backlog', state: 'ready' }), 5);
    const age = await value(registry, 'txoutbox_queue_oldest_ready_age_seconds', { ...ids, queue: 'zz_backlog' });
    assert.ok(age !== undefined && age >= 60, `zz_backlog lags ${age} s`);
  });

  test('a drained queue reads 0, then is forgotten once it has been empty for forgetEmptyAfterMs', async () => {
    const table = 'qs_forget';
    const outbox = await migrated(table);
    await insert(table, 'kept', 1, 'scheduled');
    await insert(table, 'gone', 2, 'ready');
    let now = 0;
    const reader = new QueueStateReader(() => outbox.internals, {
      cacheMs: 1000,
      exactCountLimit: 100,
      maxQueues: 10,
      statementTimeoutMs: 5000,
      forgetEmptyAfterMs: 60_000,
      clock: () => now,
    });
    const read = async () => new Map((await reader.query()).map((q) => [q.queue, q.ready + q.scheduled + q.leased]));
    assert.deepEqual(
      await read(),
      new Map([
        ['gone', 2],
        ['kept', 1],
      ]),
    );

    await db.pool.query(`DELETE FROM ${table} WHERE queue = 'gone'`);
    now = 59_999;
    assert.deepEqual(
      await read(),
      new Map([
        ['gone', 0],
        ['kept', 1],
      ]),
      'empty for less than 60 s: reads 0',
    );
    now = 60_000;
    assert.deepEqual(await read(), new Map([['kept', 1]]), 'empty for 60 s: forgotten');
    await insert(table, 'gone', 1, 'ready');
    assert.deepEqual(
      await read(),
      new Map([
        ['gone', 1],
        ['kept', 1],
      ]),
      'rows again: reported again',
    );

    // The option reaches the reader: forgetEmptyAfterMs 0 forgets a drained queue at the next read.
    const registry = new Registry();
    queueStateCollector(outbox, { registry, forgetEmptyAfterMs: 0 });
    const gone = () => value(registry, 'txoutbox_queue_messages', { ...ids, queue: 'gone', state: 'ready' });
    assert.equal(await gone(), 1);
    await db.pool.query(`DELETE FROM ${table} WHERE queue = 'gone'`);
    await waitFor(async () => (await gone()) === undefined, { timeoutMs: 5_000, intervalMs: 100, what: 'gone is forgotten' });
    assert.equal(await value(registry, 'txoutbox_queue_messages', { ...ids, queue: 'kept', state: 'scheduled' }), 1);
  });

  test('two Outboxes share one registry and prefix, told apart by appName; remove() takes one away', async () => {
    const one = await migrated('qs_share_one');
    const two = await migrated('qs_share_two');
    await insert('qs_share_one', 'x', 1, 'ready');
    await insert('qs_share_two', 'x', 2, 'ready');
    const registry = new Registry();
    const first = queueStateCollector(one, { registry, appName: 'one' });
    const second = queueStateCollector(two, { registry, appName: 'two' });
    assert.throws(() => queueStateCollector(two, { registry, appName: 'two' }), InvalidOptionError);
    const ready = (app: string) =>
      value(registry, 'txoutbox_queue_messages', { app_name: app, broker: 'outbox', queue: 'x', state: 'ready' });
    assert.deepEqual([await ready('one'), await ready('two')], [1, 2]);
    second.remove();
    assert.deepEqual([await ready('one'), await ready('two')], [1, undefined]);
    first.remove();
    assert.equal(registry.getSingleMetric('txoutbox_queue_messages'), undefined);
  });

  test("remove() and close() are idempotent: a second call never takes away a later collector's metrics", async () => {
    const one = await migrated('qs_idem_one');
    const two = await migrated('qs_idem_two');
    await insert('qs_idem_two', 'x', 2, 'ready');
    const registry = new Registry();
    const ready = () =>
      value(registry, 'txoutbox_queue_messages', { app_name: 'b', broker: 'outbox', queue: 'x', state: 'ready' });
    const a = queueStateCollector(one, { registry, appName: 'a' });
    a.remove();
    assert.equal(registry.getSingleMetric('txoutbox_queue_messages'), undefined, 'the last collector gone: its metrics go');
    const b = queueStateCollector(two, { registry, appName: 'b' });
    a.remove();
    await a.close();
    for (const name of b.metricNames) assert.ok(registry.getSingleMetric(name) !== undefined, `${name} is still registered`);
    assert.equal(await ready(), 2);
    assert.equal(await value(registry, 'txoutbox_queue_state_errors_total', { app_name: 'b', broker: 'outbox' }), 0);

    b.remove();
    assert.equal(registry.getSingleMetric('txoutbox_queue_messages'), undefined);

    // A family replaced after registry.clear(): the old family's last collector leaving does not
    // take the new family's metrics (same names) with it.
    const c = queueStateCollector(one, { registry, appName: 'c' });
    registry.clear();
    const d = queueStateCollector(two, { registry, appName: 'd' });
    c.remove();
    for (const name of d.metricNames) assert.ok(registry.getSingleMetric(name) !== undefined, `${name} survives c.remove()`);
    d.remove();
    assert.equal(registry.getSingleMetric('txoutbox_queue_messages'), undefined);
  });

  test('options are validated, naming the option, the value and what would work', async () => {
    const outbox = await migrated('qs_options');
    const registry = new Registry();
    const bad: [Record<string, unknown>, string][] = [
      [{ registry, cacheMs: 10 }, 'cacheMs'],
      [{ registry, cacheMs: 1.5e3 + 0.5 }, 'cacheMs'],
      [{ registry, exactCountLimit: 0 }, 'exactCountLimit'],
      [{ registry, maxQueues: -1 }, 'maxQueues'],
      [{ registry, forgetEmptyAfterMs: -1 }, 'forgetEmptyAfterMs'],
      [{ registry, statementTimeoutMs: '5s' }, 'statementTimeoutMs'],
      [{ registry, cacheMS: 1000 }, 'cacheMS'],
      [{ registry, prefix: 'bad-prefix' }, 'prefix'],
      [{}, 'registry'],
    ];
    for (const [options, option] of bad) {
      assert.throws(
        () => queueStateCollector(outbox, options as never),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option && error.message.includes('expected'),
        option,
      );
    }
    assert.throws(() => queueStateCollector({} as never, { registry }), InvalidOptionError);
    const taken = new Registry();
    new Counter({ name: 'txoutbox_queue_state_errors_total', help: 'someone else', registers: [taken] });
    assert.throws(() => queueStateCollector(outbox, { registry: taken }), /prefix/);
    assert.equal(taken.getSingleMetric('txoutbox_queue_messages'), undefined, 'nothing half-registered');
  });

  test('a read on a half-open connection fails within its bound (up = 0); the next scrape reads on a new connection', async () => {
    const table = 'qs_halfopen';
    const link = await TcpProxy.start(Number(new URL(db.url).port));
    db.onCleanup(() => link.close());
    const pool = new pg.Pool({ connectionString: link.via(db.url), max: 2 });
    pool.on('error', () => undefined);
    db.onCleanup(() => pool.end().catch(() => undefined));
    const outbox = newOutbox({ pool, table });
    await outbox.migrate();
    const registry = new Registry();
    // 1 s: the bound also covers checking out a new connection through the proxy, which a loaded
    // machine can take a few hundred ms to open.
    queueStateCollector(outbox, { registry, statementTimeoutMs: 1000, cacheMs: 1000 });
    assert.equal(await value(registry, 'txoutbox_queue_state_up', ids), 1);
    link.dropHalfOpen();
    await new Promise((resolve) => setTimeout(resolve, 1100)); // past the cache
    const started = Date.now();
    assert.equal(await value(registry, 'txoutbox_queue_state_up', ids), 0, 'the stuck read is reported');
    assert.ok(Date.now() - started < 5000, `the scrape answered after ${Date.now() - started} ms`);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    assert.equal(await value(registry, 'txoutbox_queue_state_up', ids), 1, 'the next read used a fresh connection');
  });
});
