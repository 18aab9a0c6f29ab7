/**
 * txoutbox/postgres against the real postgres.js and the real PostgreSQL: the conformance suite,
 * then what is postgres.js' own: savepoints, the handles it refuses, and the caller's own writes
 * committing and rolling back with the outbox row.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import postgres from 'postgres';

import { fromPostgres } from '../../src/adapters/postgres/index.js';
import { NotInTransactionError, type TransactionTarget } from '../../src/index.js';
import { adapterConformance, rollbackError, throwToRollBack } from '../support/adapter-conformance.js';
import { useTestDatabase } from '../support/database.js';
import { listen, type Listener } from '../support/listen.js';
import { outboxFactory } from '../support/outboxes.js';
import { inTransaction as pgTransaction } from '../support/transaction.js';

adapterConformance(import.meta.url, 'postgres.js', {
  wake: 'in-transaction',
  setup: (db) => {
    const sql = postgres(db.url, { max: 2, onnotice: () => {} });
    return Promise.resolve({
      // sql.begin's typings unwrap arrays of promises (UnwrapPromiseArray<T>); work's T is returned as it is.
      inTransaction: async <T>(work: (target: TransactionTarget) => Promise<T>) =>
        (await sql.begin((tx) => work(fromPostgres(tx)))) as T,
      rolledBack: (work) =>
        throwToRollBack(() =>
          sql.begin(async (tx) => {
            await work(fromPostgres(tx));
            throw rollbackError();
          }),
        ),
      wrapNonTransactional: () => fromPostgres(sql),
      close: () => sql.end(),
    });
  },
});

describe('postgres.js: savepoints, refused handles, the caller’s own writes', () => {
  const db = useTestDatabase(import.meta.url);
  const outboxes = outboxFactory(db);
  const outbox = outboxes({ pool: db.pool });
  let sql: postgres.Sql;
  let listener: Listener;

  before(async () => {
    await outbox.migrate();
    await db.pool.query('CREATE TABLE orders (id int PRIMARY KEY)');
    sql = postgres(db.url, { max: 2, onnotice: () => {} });
    listener = await listen(db.url, outbox.channel);
  });
  // Through the database's cleanups, which run before it drops the database (an after() here would run after).
  db.onCleanup(async () => {
    await listener.close();
    await sql.end();
  });

  test('refuses the root sql and a reserved connection, naming what it got and the fix', async () => {
    assert.throws(
      () => fromPostgres(sql),
      (error) => error instanceof NotInTransactionError && /root `sql`/.test(error.message) && /sql\.begin/.test(error.message),
    );
    const reserved = await sql.reserve();
    try {
      assert.throws(
        () => fromPostgres(reserved),
        (error) => error instanceof NotInTransactionError && /reserved connection/.test(error.message),
      );
    } finally {
      reserved.release();
    }
  });

  test('the caller’s insert and the outbox row commit together, and roll back together', async () => {
    await sql.begin(async (tx) => {
      await tx`INSERT INTO orders (id) VALUES (1)`;
      await outbox.publish(fromPostgres(tx), 'orders.q', { orderId: 1 });
    });
    await throwToRollBack(() =>
      sql.begin(async (tx) => {
        await tx`INSERT INTO orders (id) VALUES (2)`;
        await outbox.publish(fromPostgres(tx), 'orders.q', { orderId: 2 });
        throw rollbackError();
      }),
    );
    assert.deepEqual(
      (await db.pool.query<{ id: number }>('SELECT id FROM orders ORDER BY id')).rows.map((row) => row.id),
      [1],
    );
    const rows = await outbox.fetchUnprocessed({ queue: 'orders.q' });
    assert.deepEqual(
      rows.map((row) => row.body),
      [{ orderId: 1 }],
    );
  });

  test('a savepoint: its publish is kept when released, discarded when rolled back; the wake-up comes at COMMIT', async () => {
    const queue = `savepoint-${Date.now()}.q`;
    await sql.begin(async (tx) => {
      await tx.savepoint(async (sp) => {
        await outbox.publish(fromPostgres(sp), queue, 'kept');
      });
      await throwToRollBack(() =>
        tx.savepoint(async (sp) => {
          await outbox.publish(fromPostgres(sp), queue, 'discarded');
          throw rollbackError();
        }),
      );
      await pgTransaction(db.pool, (client) => outbox.publish(client, 'sentinel.q', 'during'));
      await listener.waitFor('sentinel.q');
      assert.ok(!listener.payloads.includes(queue), 'no wake-up before the outer COMMIT');
    });
    await listener.waitFor(queue);
    const rows = await outbox.fetchUnprocessed({ queue });
    assert.deepEqual(
      rows.map((row) => row.body),
      ['kept'],
    );
  });

  test('a connection opened with prepare: false (PgBouncer in transaction mode) works the same', async () => {
    const unprepared = postgres(db.url, { max: 1, prepare: false, onnotice: () => {} });
    try {
      const body = Buffer.from([0, 255, 1]);
      const id = await unprepared.begin((tx) => outbox.publish(fromPostgres(tx), 'unprepared.q', body, { headers: { a: 'ü' } }));
      const [row] = await outbox.fetchUnprocessed({ queue: 'unprepared.q' });
      assert.equal(row?.id, id);
      assert.deepEqual(row?.body, body);
      assert.equal(row?.headers.a, 'ü');
    } finally {
      await unprepared.end();
    }
  });

  for (const [name, transform] of [
    ['camel', postgres.camel],
    ['pascal', postgres.pascal],
    ['kebab', postgres.kebab],
  ] as const) {
    test(`a sql created with transform: postgres.${name} (renamed result columns) publishes and reads rows the same`, async () => {
      const renaming = postgres(db.url, { max: 1, transform, onnotice: () => {} });
      try {
        await renaming.begin(async (tx) => {
          const id = await outbox.publish(fromPostgres(tx), `${name}.q`, { a: 1 }, { headers: { x: 'y' }, timerId: 't' });
          const [row] = await outbox.fetchUnprocessed(fromPostgres(tx), { queue: `${name}.q` });
          assert.equal(row?.id, id);
          assert.deepEqual(row.body, { a: 1 });
          assert.equal(row.headers.x, 'y');
          assert.equal(row.timerId, 't');
          assert.equal(row.attemptsCount, 0);
          assert.ok(!Number.isNaN(row.nextAttemptAt.getTime()) && !Number.isNaN(row.createdAt.getTime()));
        });
      } finally {
        await renaming.end();
      }
    });
  }
});
