import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../src/embedded/index.js';
import { Outbox } from '../../src/index.js';
import { useTestDatabase } from '../support/database.js';
import { EventLog } from '../support/events.js';
import { killFixtureWhenReady } from '../support/kill-fixture.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { TestLogger } from '../support/test-logger.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

describe('crashes and database failures lose nothing (DESIGN invariant 3)', () => {
  test('a subscriber process SIGKILLed mid-batch: after the lease TTL another instance handles every remaining row', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'crash_outbox');
    await db.pool.query('CREATE TABLE handled (id bigint NOT NULL, by_child boolean NOT NULL)');
    const ids = await publishCommitted(
      outbox,
      db.pool,
      'crash',
      Array.from({ length: 200 }, (_, i) => i),
    );

    await killFixtureWhenReady('test/fixtures/subscriber-child.fixture.ts', [db.url, '1000']);
    const leasedAtCrash = await db.pool.query<{ n: string }>(
      'SELECT count(*) AS n FROM crash_outbox WHERE acquired_token IS NOT NULL',
    );
    assert.ok(Number(leasedAtCrash.rows[0]?.n) > 0, 'the child died holding leases');

    outbox.subscribe(
      'crash',
      async (message) => {
        await db.pool.query('INSERT INTO handled (id, by_child) VALUES ($1, false)', [message.id]);
      },
      { concurrency: 8, leaseTtlMs: 1000, ...FAST_POLL },
    );
    outbox.start();
    await waitFor(async () => (await remaining(db.pool, 'crash', 'crash_outbox')) === 0, {
      timeoutMs: 30_000,
      what: 'all rows handled',
    });
    const { rows } = await db.pool.query<{ id: string }>('SELECT DISTINCT id::text AS id FROM handled');
    assert.deepEqual(new Set(rows.map((r) => r.id)), new Set(ids), 'every message was handled at least once');
    assert.ok(
      log.of('acked').some((e) => e.deliveriesCount > 1),
      'rows the child held were redelivered after their leases expired',
    );
  });

  for (const queues of [['orphan'], ['orphan', 'other']]) {
    test(`a dead holder's rows are taken back under a backlog, not after it (${queues.length} queue${queues.length > 1 ? 's' : ''})`, async () => {
      const table = `orphan_${queues.length}`;
      const { outbox } = await migratedOutbox(newOutbox, db.pool, table);
      const keyed = (body: string) =>
        inTransaction(db.pool, (client) => outbox.publish(client, 'orphan', body, { orderingKey: 'k' }));
      const orphan = await keyed('orphaned');
      // As a process that claimed it and died left it: leased an hour ago, one delivery counted.
      await db.pool.query(
        `UPDATE ${table} SET acquired_token = gen_random_uuid(), acquired_at = now() - interval '1 hour', deliveries_count = 1 WHERE id = $1`,
        [orphan],
      );
      await keyed('next of its key');
      await publishCommitted(
        outbox,
        db.pool,
        'orphan',
        Array.from({ length: 300 }, (_, i) => i),
      );
      const order: unknown[] = [];
      outbox.subscribe(
        queues,
        async (message) => {
          order.push(message.body);
          await new Promise((resolve) => setTimeout(resolve, 1));
        },
        { concurrency: 1, fetchBatchSize: 10, leaseTtlMs: 2_000, ...FAST_POLL },
      );
      outbox.start();
      await waitFor(async () => (await remaining(db.pool, 'orphan', table)) === 0, {
        timeoutMs: 30_000,
        what: 'the queue drained',
      });
      const at = order.indexOf('orphaned');
      assert.ok(at >= 0 && at < 100, `the orphaned row ran at position ${at} of ${order.length}`);
      assert.ok(order.indexOf('next of its key') > at, 'and its key kept its order');
    });
  }

  test("the subscriber's connections killed with pg_terminate_backend mid-run: every message is still delivered", async () => {
    const pool = new pg.Pool({ connectionString: db.url, max: 6 });
    db.onCleanup(() => pool.end().catch(() => undefined));
    pool.on('error', () => undefined);
    const { outbox, log } = await migratedOutbox(newOutbox, pool, 'r_terminate');
    const handled = new Set<string>();
    outbox.subscribe(
      'term',
      async (message) => {
        await new Promise((resolve) => setTimeout(resolve, 2));
        handled.add(message.id);
      },
      { concurrency: 4, fetchBatchSize: 20, leaseTtlMs: 1000, ...FAST_POLL },
    );
    outbox.start();
    const ids = await publishCommitted(
      outbox,
      db.pool,
      'term',
      Array.from({ length: 1000 }, (_, i) => i),
    );
    for (let round = 0; round < 3; round += 1) {
      await waitFor(() => handled.size > (round + 1) * 150, { timeoutMs: 20_000, what: `progress before kill ${round}` });
      const { rows } = await db.pool.query<{ killed: number }>(
        `SELECT count(pg_terminate_backend(pid))::int AS killed FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = '' AND backend_type = 'client backend'
           AND pid NOT IN (SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_terminate_backend%')`,
      );
      assert.ok((rows[0]?.killed ?? 0) > 0);
    }
    await waitFor(async () => (await remaining(db.pool, 'term', 'r_terminate')) === 0, {
      timeoutMs: 30_000,
      what: 'table drained',
    });
    for (const id of ids) assert.ok(handled.has(id), `message ${id} handled`);
    assert.ok(
      newOutbox.logger.entries.some((e) => e.level !== 'debug' && /failed|LISTEN/.test(e.message)),
      'the failures were logged',
    );
    assert.ok(log.of('acked').length >= 1000 - log.of('lease_lost').length);
    assert.equal(await outbox.ping(), true, 'healthy again after the kills');
  });

  test('a full PostgreSQL stop/start mid-run: every message is still delivered', async () => {
    const server = await startEmbeddedPostgres({ settings: { fsync: 'off' } });
    db.onCleanup(() => server.stop());
    const url = await server.createDatabase('restart_db');
    const log = new EventLog();
    const outbox = new Outbox({
      connectionString: url,
      recorder: log.recorder,
      logger: new TestLogger(),
      gracefulTimeoutMs: 2_000,
    });
    db.onCleanup(() => outbox.stop());
    await outbox.migrate();
    const producer = new pg.Pool({ connectionString: url, max: 2 });
    producer.on('error', () => undefined);
    db.onCleanup(() => producer.end().catch(() => undefined));
    const handled = new Set<string>();
    outbox.subscribe(
      'restart',
      async (message) => {
        await new Promise((resolve) => setTimeout(resolve, 2));
        handled.add(message.id);
      },
      { concurrency: 4, fetchBatchSize: 20, leaseTtlMs: 1000, ...FAST_POLL },
    );
    outbox.start();
    const ids = await publishCommitted(
      outbox,
      producer,
      'restart',
      Array.from({ length: 600 }, (_, i) => i),
    );
    await waitFor(() => handled.size > 100, { timeoutMs: 20_000, what: 'progress before the restart' });
    await server.restart();
    await waitFor(async () => (await remaining(producer, 'restart').catch(() => -1)) === 0, {
      timeoutMs: 60_000,
      what: 'table drained after restart',
    });
    for (const id of ids) assert.ok(handled.has(id), `message ${id} handled`);
    // After the restart the LISTEN connection is back: a new message is woken, not polled.
    await waitFor(async () => await outbox.ping(), { timeoutMs: 20_000, what: 'healthy after restart' });
  });
});
