/**
 * txoutbox/drizzle against the real drizzle-orm and the real PostgreSQL, on both of its drivers:
 * node-postgres (wake-up after commit, through the transaction's pg client) and postgres-js
 * (wake-up in the transaction). The conformance suite for each, then what is Drizzle's own: the
 * handles it refuses, its own inserts committing and rolling back with the outbox row, nested
 * transactions (savepoints), txoutbox's statements on node-postgres bypassing its logger.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { TransactionRollbackError } from 'drizzle-orm';
import { drizzle as drizzleNodePg, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { integer, pgTable } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePostgresJs } from 'drizzle-orm/postgres-js';
import pg from 'pg';
import postgres from 'postgres';

import { fromDrizzle } from '../../src/adapters/drizzle/index.js';
import { NotInTransactionError, type TransactionTarget } from '../../src/index.js';
import { adapterConformance, type DataLayerUnderTest } from '../support/adapter-conformance.js';
import { useTestDatabase } from '../support/database.js';
import { listen, type Listener } from '../support/listen.js';
import { outboxFactory } from '../support/outboxes.js';
import { inTransaction as pgTransaction } from '../support/transaction.js';

const orders = pgTable('orders', { id: integer('id').primaryKey() });

interface DrizzleDb {
  transaction<T>(work: (tx: Parameters<typeof fromDrizzle>[0] & { rollback(): never }) => Promise<T>): Promise<T>;
}

/** Rolls back the Drizzle way: tx.rollback() throws TransactionRollbackError out of db.transaction. */
async function rolledBack(db: DrizzleDb, work: (target: TransactionTarget) => Promise<void>): Promise<void> {
  await assert.rejects(
    db.transaction(async (tx) => {
      await work(fromDrizzle(tx));
      tx.rollback();
    }),
    TransactionRollbackError,
  );
}

function layer(db: DrizzleDb & Parameters<typeof fromDrizzle>[0], close: () => Promise<void>): DataLayerUnderTest {
  return {
    inTransaction: (work) => db.transaction((tx) => work(fromDrizzle(tx))),
    rolledBack: (work) => rolledBack(db, work),
    wrapNonTransactional: () => fromDrizzle(db),
    close,
  };
}

adapterConformance(import.meta.url, 'drizzle (node-postgres)', {
  wake: 'after-commit',
  setup: (db) => {
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    return Promise.resolve(layer(drizzleNodePg({ client: pool }), () => pool.end()));
  },
});

// node-postgres' pipeline mode sends each query before the ones ahead of it are answered: the
// status a dispatch check reads is stale, so txoutbox has the server check (a SAVEPOINT in the
// same round trip), and the wake-up rides in the statement.
adapterConformance(import.meta.url, 'drizzle (node-postgres, pipeline mode)', {
  wake: 'in-transaction',
  setup: (db) => {
    const pool = new pg.Pool({ connectionString: db.url, max: 2, pipeline: true });
    return Promise.resolve(layer(drizzleNodePg({ client: pool }), () => pool.end()));
  },
});

adapterConformance(import.meta.url, 'drizzle (postgres-js)', {
  wake: 'in-transaction',
  setup: (db) => {
    const sql = postgres(db.url, { max: 2, onnotice: () => {} });
    return Promise.resolve(layer(drizzlePostgresJs({ client: sql }), () => sql.end()));
  },
});

describe('drizzle: refused handles, its own writes, nested transactions, its logger', () => {
  const db = useTestDatabase(import.meta.url);
  const outbox = outboxFactory(db)({ pool: db.pool });
  const logged: string[] = [];
  let pool: pg.Pool;
  let nodePg: NodePgDatabase;
  let sql: postgres.Sql;
  let listener: Listener;

  before(async () => {
    await outbox.migrate();
    await db.pool.query('CREATE TABLE orders (id int PRIMARY KEY)');
    pool = new pg.Pool({ connectionString: db.url, max: 2 });
    nodePg = drizzleNodePg({ client: pool, logger: { logQuery: (query) => logged.push(query) } });
    sql = postgres(db.url, { max: 2, onnotice: () => {} });
    listener = await listen(db.url, outbox.channel);
    // Through the database's cleanups, which run before it drops the database.
    db.onCleanup(async () => {
      await listener.close();
      await pool.end();
      await sql.end();
    });
  });

  test('refuses db on both drivers and a transaction that has ended, naming what it got and the fix', async () => {
    const refused = (pattern: RegExp) => (error: unknown) =>
      error instanceof NotInTransactionError &&
      pattern.test(error.message) &&
      /db\.transaction\(async \(tx\)/.test(error.message);
    assert.throws(() => fromDrizzle(nodePg), refused(/the database `db` \(NodePgDatabase\)/));
    assert.throws(() => fromDrizzle(drizzlePostgresJs({ client: sql })), refused(/the database `db` \(PostgresJsDatabase\)/));
    assert.throws(() => fromDrizzle({ execute: () => Promise.resolve([]) }), refused(/not a Drizzle transaction/));
    let escaped: Parameters<typeof fromDrizzle>[0] | undefined;
    await nodePg.transaction((tx) => {
      escaped = tx;
      return Promise.resolve();
    });
    assert.ok(escaped !== undefined);
    assert.throws(() => fromDrizzle(escaped!), refused(/already ended/));
  });

  for (const driver of ['node-postgres', 'postgres-js'] as const) {
    test(`${driver}: Drizzle's insert and the outbox row commit together, and roll back together`, async () => {
      const drizzleDb = driver === 'node-postgres' ? nodePg : drizzlePostgresJs({ client: sql });
      const base = driver === 'node-postgres' ? 10 : 20;
      const queue = `orders-${driver}.q`;
      await drizzleDb.transaction(async (tx) => {
        await tx.insert(orders).values({ id: base + 1 });
        await outbox.publish(fromDrizzle(tx), queue, { orderId: base + 1 });
      });
      await assert.rejects(
        drizzleDb.transaction(async (tx) => {
          await tx.insert(orders).values({ id: base + 2 });
          await outbox.publish(fromDrizzle(tx), queue, { orderId: base + 2 });
          tx.rollback();
        }),
        TransactionRollbackError,
      );
      const stored = await db.pool.query<{ id: number }>('SELECT id FROM orders WHERE id > $1 AND id < $2 ORDER BY id', [
        base,
        base + 10,
      ]);
      assert.deepEqual(
        stored.rows.map((row) => row.id),
        [base + 1],
      );
      assert.deepEqual(
        (await outbox.fetchUnprocessed({ queue })).map((row) => row.body),
        [{ orderId: base + 1 }],
      );
    });
  }

  test('node-postgres, nested transactions: a released one wakes only at the outer COMMIT, a rolled-back one is discarded', async () => {
    const queue = `nested-${Date.now()}.q`;
    await nodePg.transaction(async (tx) => {
      await tx.transaction(async (inner) => {
        await outbox.publish(fromDrizzle(inner), queue, 'kept');
      });
      await assert.rejects(
        tx.transaction(async (inner) => {
          await outbox.publish(fromDrizzle(inner), queue, 'discarded');
          inner.rollback();
        }),
        TransactionRollbackError,
      );
      await pgTransaction(db.pool, (client) => outbox.publish(client, 'sentinel.q', 'during'));
      await listener.waitFor('sentinel.q');
      assert.ok(!listener.payloads.includes(queue), 'no wake-up at RELEASE SAVEPOINT, only after the outer COMMIT');
    });
    await listener.waitFor(queue);
    assert.deepEqual(
      (await outbox.fetchUnprocessed({ queue })).map((row) => row.body),
      ['kept'],
    );
  });

  test("on node-postgres txoutbox's statements run on the transaction's pg client, checked at dispatch, not through Drizzle", async () => {
    logged.length = 0;
    await nodePg.transaction((tx) => outbox.publish(fromDrizzle(tx), 'logged.q', 'x'));
    // Through tx.execute() a statement queued behind Drizzle's ROLLBACK ran on its own
    // (adapter-conformance.ts, the un-awaited publish): so Drizzle's logger no longer sees it.
    assert.ok(!logged.some((query) => query.includes('INSERT INTO')), logged.join('\n'));
  });

  test('a postgres.js client with transform: postgres.camel under Drizzle reads the same rows', async () => {
    const camel = postgres(db.url, { max: 1, transform: postgres.camel, onnotice: () => {} });
    try {
      await drizzlePostgresJs({ client: camel }).transaction(async (tx) => {
        const id = await outbox.publish(fromDrizzle(tx), 'camel.q', { a: 1 }, { timerId: 't' });
        const [row] = await outbox.fetchUnprocessed(fromDrizzle(tx), { queue: 'camel.q' });
        assert.equal(row?.id, id);
        assert.equal(row.timerId, 't');
        assert.ok(!Number.isNaN(row.nextAttemptAt.getTime()));
      });
    } finally {
      await camel.end();
    }
  });
});
