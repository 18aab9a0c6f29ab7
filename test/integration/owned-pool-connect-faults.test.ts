import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import pg from 'pg';

import { Outbox } from '../../src/index.js';
import { createOwnedPool } from '../../src/util/owned-pool.js';
import { useTestDatabase } from '../support/database.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { TestLogger } from '../support/test-logger.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);

/**
 * A backend terminated just as its connection became ready (pg_terminate_backend during a deploy
 * or a failover; chaos terminate-backends crashed a worker this way): the FATAL arrives in the same
 * read as the ReadyForQuery that completes the connect, and node-postgres emits it as 'error' on
 * the client at once, before the pool or the caller could listen. Unheard, that event is an
 * uncaught exception: the whole process dies. It must fail that connect (or the statement on it)
 * and nothing else.
 */
for (const sessionSettings of [true, false]) {
  test(`a backend terminated as the connection became ready fails that checkout, never the process (sessionSettings ${String(sessionSettings)})`, async () => {
    const proxy = await TcpProxy.start(Number(new URL(db.url).port));
    const uncaught: unknown[] = [];
    const record = (error: unknown): void => {
      uncaught.push(error);
    };
    process.on('uncaughtException', record);
    const owned = createOwnedPool(proxy.via(db.url), 2, 5_000, new TestLogger(), { sessionSettings });
    try {
      proxy.terminateAtConnect(true);
      for (let attempt = 0; attempt < 3; attempt += 1)
        await assert.rejects(owned.pool.query('SELECT 1'), /terminat|connection/i, 'the statement fails');
      await sleep(100);
      assert.deepEqual(
        uncaught.map((error) => (error instanceof Error ? error.message : String(error))),
        [],
        'no uncaught exception',
      );
      proxy.terminateAtConnect(false);
      const { rows } = await owned.pool.query<{ one: number }>('SELECT 1 AS one');
      assert.equal(rows[0]?.one, 1, 'the pool connects again once the server lets it');
    } finally {
      process.off('uncaughtException', record);
      await owned.close(2_000);
      await proxy.close();
    }
  });
}

test('a pool passed in: a backend terminated as its connection became ready fails that claim, never the process', async () => {
  // Reproduction (CI, subscriber-recovery.test.ts, then in a loop of pg_terminate_backend under a
  // subscription on a pool of the test's): the claim's checkout got such a connection, and the
  // FATAL, emitted before the checkout resolved, had no listener: the process died.
  const table = 'passed_pool_connect_fault';
  await new Outbox({ pool: db.pool, table, logger: new TestLogger() }).migrate();
  const proxy = await TcpProxy.start(Number(new URL(db.url).port));
  const pool = new pg.Pool({ connectionString: proxy.via(db.url), max: 4 });
  pool.on('error', () => undefined);
  const uncaught: unknown[] = [];
  const record = (error: unknown): void => {
    uncaught.push(error);
  };
  process.on('uncaughtException', record);
  const outbox = new Outbox({ pool, table, logger: new TestLogger() });
  const handled: unknown[] = [];
  try {
    proxy.terminateAtConnect(true);
    outbox.subscribe(
      'faults',
      (message) => {
        handled.push(message.body);
      },
      { minPollIntervalMs: 20, maxPollIntervalMs: 50 },
    );
    outbox.start();
    await sleep(600);
    assert.deepEqual(
      uncaught.map((error) => (error instanceof Error ? error.message : String(error))),
      [],
      'no uncaught exception',
    );
    proxy.terminateAtConnect(false);
    await inTransaction(db.pool, (client) => outbox.publish(client, 'faults', 'after'));
    await waitFor(() => handled.length === 1, { what: 'a message handled once the server lets it connect' });
  } finally {
    process.off('uncaughtException', record);
    await outbox.stop();
    await pool.end();
    await proxy.close();
  }
});
