import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';
import { Registry } from 'prom-client';

import { InvalidOptionError, type Outbox } from '../../src/index.js';
import { queueStateCollector } from '../../src/prometheus/index.js';
import { QUEUE_STATE_LOCK_NAMESPACE } from '../../src/prometheus/queue-state-leader.js';
import { Runner } from '../../src/runner/runner.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { TestLogger } from '../support/test-logger.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

/** The value of `name`'s only series in an exposition, or undefined when it has none. */
function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function scrape(runner: Runner): Promise<string> {
  return await (await fetch(runner.metricsUrl ?? '')).text();
}

async function seeded(table: string): Promise<Outbox> {
  const outbox = newOutbox({ pool: db.pool, table });
  await outbox.migrate();
  await db.pool.query(`INSERT INTO ${table} (queue, payload) SELECT 'orders', '\\x00' FROM generate_series(1, 3)`);
  return outbox;
}

/** Sessions holding the queue-state lock of any table of this database. */
async function lockHolders(): Promise<number[]> {
  const { rows } = await db.pool.query<{ pid: number }>(
    `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1::int::oid AND objsubid = 2
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    [QUEUE_STATE_LOCK_NAMESPACE],
  );
  return rows.map((r) => r.pid);
}

/**
 * Two library-use collectors with leader election on one table, each on its own pool and
 * registry (two processes, as far as the election can tell); `leaderOf(i)` reads collector i's
 * leader series.
 */
function twoCollectors(table: string) {
  const pools = [new pg.Pool({ connectionString: db.url, max: 2 }), new pg.Pool({ connectionString: db.url, max: 2 })];
  const registries = [new Registry(), new Registry()];
  const outboxes = pools.map((pool) => newOutbox({ pool, table }));
  const collectors = outboxes.map((outbox, i) =>
    queueStateCollector(outbox, { registry: registries[i] ?? new Registry(), leaderElection: true, leaderCheckIntervalMs: 200 }),
  );
  const leaderOf = async (i: number) =>
    (await registries[i]?.getSingleMetricAsString('txoutbox_queue_state_leader'))?.endsWith(' 1') ?? false;
  return { pools, registries, outboxes, collectors, leaderOf };
}

describe('queue state read once per cluster (leaderElection)', () => {
  test('two runners of one table: one reads and exports, the other exports leader 0; stopping the leader hands over', async () => {
    const table = 'qsl_runners';
    await seeded(table);
    const logger = new TestLogger();
    const start = () =>
      Runner.start({
        plans: new Map(),
        databaseUrl: db.url,
        table,
        dlqTable: `${table}_dlq`,
        metrics: { enabled: true, host: '127.0.0.1', port: 0, prefix: 'txoutbox', queueStateLeader: true },
        logger,
      });
    const first = await start();
    const second = await start();
    try {
      // A first scrape waits for its runner's first try of the lock: no scrape shows a half-elected state.
      const texts = await Promise.all([scrape(first), scrape(second)]);
      const leaders = texts.map((t) => sample(t, 'txoutbox_queue_state_leader'));
      assert.deepEqual([...leaders].sort(), [0, 1], 'exactly one leader');
      const leaderIndex = leaders.indexOf(1);
      const [leader, standby] = leaderIndex === 0 ? [first, second] : [second, first];
      const [leaderText, standbyText] = leaderIndex === 0 ? texts : [texts[1], texts[0]];
      assert.match(leaderText ?? '', /txoutbox_queue_messages\{[^}]*queue="orders",state="ready"\} 3/);
      assert.equal(sample(leaderText ?? '', 'txoutbox_queue_state_up'), 1);
      // The standby read nothing: no depth, no up, no read duration (each read sets it).
      for (const name of ['txoutbox_queue_messages', 'txoutbox_queue_state_up', 'txoutbox_queue_state_read_duration_seconds']) {
        assert.equal(sample(standbyText ?? '', name), undefined, `standby exports no ${name}`);
      }
      assert.equal((await lockHolders()).length, 1);

      // A clean stop releases the lock first; the standby takes over at its next try (200 ms … 5 s).
      await leader.stop();
      await waitFor(async () => sample(await scrape(standby), 'txoutbox_queue_state_leader') === 1, {
        timeoutMs: 15_000,
        what: 'the standby becomes the leader',
      });
      const after = await scrape(standby);
      assert.match(after, /txoutbox_queue_messages\{[^}]*queue="orders",state="ready"\} 3/);
      assert.ok(logger.messages('info').some((m) => m.includes('this process is the leader')));
    } finally {
      await Promise.all([first.stop(), second.stop()]);
    }
    assert.deepEqual(await lockHolders(), [], 'stopped runners hold no lock');
  });

  test('a leader whose session dies (host gone, as the server sees it) is replaced; it comes back as a standby', async () => {
    const table = 'qsl_failover';
    await seeded(table);
    const { pools, registries, outboxes, collectors, leaderOf } = twoCollectors(table);
    try {
      await Promise.all(registries.map((r) => r.metrics()));
      const states = [await leaderOf(0), await leaderOf(1)];
      assert.equal(states.filter(Boolean).length, 1, 'one leader');
      const leader = states.indexOf(true);
      const standby = 1 - leader;
      // Only the leader's pool was used: the standby never checked out a connection to read.
      assert.equal(pools[standby]?.totalCount, 0, "the standby's pool never connected");
      assert.ok((pools[leader]?.totalCount ?? 0) > 0);

      const [holder] = await lockHolders();
      assert.ok(holder !== undefined);
      await db.pool.query('SELECT pg_terminate_backend($1)', [holder]);
      await waitFor(() => leaderOf(standby), { timeoutMs: 15_000, what: 'the standby takes the lock over' });
      assert.match((await registries[standby]?.metrics()) ?? '', /txoutbox_queue_messages\{[^}]*state="ready"\} 3/);
      // The old leader reconnects and stands by: never two leaders.
      await waitFor(async () => (await lockHolders()).length === 1 && !(await leaderOf(leader)), {
        timeoutMs: 15_000,
        what: 'the old leader stands by',
      });
      assert.doesNotMatch((await registries[leader]?.metrics()) ?? '', /txoutbox_queue_messages\{/);
      assert.ok(newOutbox.logger.messages('warn').some((m) => m.includes('leader-election session failed')));
    } finally {
      await Promise.all(collectors.map((c) => c.close()));
      await Promise.all(outboxes.map((o) => o.stop()));
      await Promise.all(pools.map((p) => p.end()));
    }
    assert.deepEqual(await lockHolders(), []);
  });

  test("a leader whose Outbox stopped without the collector's close() gives the lock up: the standby takes over", async () => {
    const table = 'qsl_owner_stopped';
    await seeded(table);
    const { pools, registries, outboxes, collectors, leaderOf } = twoCollectors(table);
    try {
      await Promise.all(registries.map((r) => r.metrics()));
      const leader = [await leaderOf(0), await leaderOf(1)].indexOf(true);
      assert.ok(leader >= 0, 'one leader');
      const standby = 1 - leader;
      // Library use: the application stops its Outbox and forgets the collector. The leader could
      // read nothing any more (its Outbox refuses), yet held the lock: nobody read the queue state.
      await outboxes[leader]?.stop();
      await waitFor(() => leaderOf(standby), { timeoutMs: 15_000, what: 'the standby takes the lock over' });
      assert.match((await registries[standby]?.metrics()) ?? '', /txoutbox_queue_messages\{[^}]*state="ready"\} 3/);
      assert.equal(await leaderOf(leader), false);
      assert.equal((await lockHolders()).length, 1);
    } finally {
      await Promise.all(collectors.map((c) => c.close()));
      await Promise.all(outboxes.map((o) => o.stop()));
      await Promise.all(pools.map((p) => p.end()));
    }
    assert.deepEqual(await lockHolders(), []);
  });

  test('without leaderElection every collector reads (no leader series); options are validated', async () => {
    const table = 'qsl_plain';
    const outbox = await seeded(table);
    const registry = new Registry();
    const collector = queueStateCollector(outbox, { registry });
    const text = await registry.metrics();
    assert.match(text, /txoutbox_queue_messages\{[^}]*state="ready"\} 3/);
    assert.doesNotMatch(text, /^txoutbox_queue_state_leader\{/m);
    assert.ok(collector.metricNames.includes('txoutbox_queue_state_leader'));
    collector.remove();
    for (const [options, option] of [
      [{ leaderElection: 'yes' }, 'leaderElection'],
      [{ leaderElection: true, leaderCheckIntervalMs: 50 }, 'leaderCheckIntervalMs'],
    ] as const) {
      assert.throws(
        () => queueStateCollector(outbox, { registry: new Registry(), ...options } as never),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
      );
    }
    assert.deepEqual(await lockHolders(), [], 'a rejected collector opened no session');
  });
});
