import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { createOwnedPool } from '../../src/util/owned-pool.js';
import { useTestDatabase } from '../support/database.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { TestLogger } from '../support/test-logger.js';

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
