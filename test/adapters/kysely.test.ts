/**
 * txoutbox/kysely against the real kysely package (PostgresDialect on node-postgres) and the real
 * PostgreSQL: the conformance suite, then what is Kysely's own — the controlled transaction, the
 * handles that are refused, the user's plugins, and Kysely's own writes committing or rolling back
 * with the outbox row.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { CamelCasePlugin, type Generated, Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';

import { fromKysely } from '../../src/adapters/kysely/index.js';
import { NotInTransactionError, type Outbox } from '../../src/index.js';
import { adapterConformance, rollbackError, throwToRollBack } from '../support/adapter-conformance.js';
import { useTestDatabase } from '../support/database.js';
import { listen, type Listener } from '../support/listen.js';
import { outboxFactory } from '../support/outboxes.js';
import { inTransaction as pgTransaction } from '../support/transaction.js';

interface Database {
  orders: { id: Generated<number>; total: number };
}

function kysely(url: string, plugins: CamelCasePlugin[] = []): Kysely<Database> {
  return new Kysely<Database>({
    dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 4 }) }),
    plugins,
  });
}

adapterConformance(import.meta.url, 'kysely', {
  wake: 'in-transaction',
  setup: (db) => {
    const k = kysely(db.url);
    return Promise.resolve({
      inTransaction: (work) => k.transaction().execute((trx) => work(fromKysely(trx))),
      rolledBack: (work) =>
        throwToRollBack(() =>
          k.transaction().execute(async (trx) => {
            await work(fromKysely(trx));
            throw rollbackError();
          }),
        ),
      wrapNonTransactional: () => fromKysely(k),
      close: () => k.destroy(),
    });
  },
});

// Its own database, opened at the file's root so it is dropped after the describe's hooks closed its connections.
const db = useTestDatabase(import.meta.url);
const outboxes = outboxFactory(db);

describe('kysely: what is specific to it', () => {
  let outbox: Outbox;
  let k: Kysely<Database>;
  let listener: Listener;

  before(async () => {
    outbox = outboxes({ pool: db.pool });
    await outbox.migrate();
    await db.pool.query('CREATE TABLE orders (id serial PRIMARY KEY, total numeric NOT NULL)');
    k = kysely(db.url);
    listener = await listen(db.url, outbox.channel);
  });
  after(async () => {
    await listener.close();
    await k.destroy();
  });

  test('refuses db, a connection and a finished controlled transaction, naming the fix', async () => {
    assert.throws(
      () => fromKysely(k),
      (error) =>
        error instanceof NotInTransactionError &&
        /isTransaction is false/.test(error.message) &&
        /db\.transaction\(\)/.test(error.message),
    );
    await k.connection().execute((connection) => {
      assert.throws(() => fromKysely(connection), NotInTransactionError);
      return Promise.resolve();
    });
    const committed = await k.startTransaction().execute();
    await committed.commit().execute();
    assert.throws(() => fromKysely(committed), /already committed/);
    const rolledBack = await k.startTransaction().execute();
    await rolledBack.rollback().execute();
    assert.throws(() => fromKysely(rolledBack), /already rolled back/);
    assert.throws(() => fromKysely(null as never), NotInTransactionError);
  });

  test("Kysely's own insert and the outbox row commit together, and roll back together", async () => {
    const committed = await k.transaction().execute(async (trx) => {
      const order = await trx.insertInto('orders').values({ total: 42 }).returning('id').executeTakeFirstOrThrow();
      return { order, id: await outbox.publish(fromKysely(trx), 'orders.q', { orderId: order.id }) };
    });
    const rows = await outbox.fetchUnprocessed({ queue: 'orders.q' });
    assert.deepEqual(
      rows.map((row) => [row.id, row.body]),
      [[committed.id, { orderId: committed.order.id }]],
    );

    await throwToRollBack(() =>
      k.transaction().execute(async (trx) => {
        await trx.insertInto('orders').values({ total: 7 }).execute();
        await outbox.publish(fromKysely(trx), 'orders.q', 'never');
        throw rollbackError();
      }),
    );
    assert.equal((await k.selectFrom('orders').select('id').where('total', '=', 7).execute()).length, 0);
    assert.equal((await outbox.fetchUnprocessed({ queue: 'orders.q' })).length, 1);
  });

  test('a controlled transaction (db.startTransaction()): commit delivers, rollback and a rolled-back savepoint discard', async () => {
    const trx = await k.startTransaction().execute();
    const kept = await outbox.publish(fromKysely(trx), 'controlled.q', 'kept');
    const savepoint = await trx.savepoint('sp').execute();
    await outbox.publish(fromKysely(savepoint), 'controlled-savepoint.q', 'discarded');
    await savepoint.rollbackToSavepoint('sp').execute();
    await trx.commit().execute();
    await listener.waitFor('controlled.q');
    assert.deepEqual(
      (await outbox.fetchUnprocessed({ queue: 'controlled.q' })).map((row) => row.id),
      [kept],
    );
    assert.equal((await outbox.fetchUnprocessed({ queue: 'controlled-savepoint.q' })).length, 0);

    const abandoned = await k.startTransaction().execute();
    await outbox.publish(fromKysely(abandoned), 'controlled-rollback.q', 'never');
    await abandoned.rollback().execute();
    await pgTransaction(db.pool, (client) => outbox.publish(client, 'sentinel.q', 'after'));
    await listener.waitFor('sentinel.q');
    assert.ok(!listener.payloads.includes('controlled-rollback.q'), 'a rolled-back controlled transaction wakes nobody');
    assert.ok(!listener.payloads.includes('controlled-savepoint.q'), 'nor does a rolled-back savepoint');
    assert.equal((await outbox.fetchUnprocessed({ queue: 'controlled-rollback.q' })).length, 0);
  });

  test("a publish queued behind Kysely's ROLLBACK is refused by the server (the savepoint guard), never run on its own", async () => {
    // The pool's one client is held so the test can queue a ROLLBACK on it just before publish's
    // statement reaches Kysely: an un-awaited publish, made deterministic.
    let client: pg.PoolClient | undefined;
    const pool = new pg.Pool({ connectionString: db.url, max: 1 });
    pool.on('acquire', (acquired) => {
      client = acquired;
    });
    const logged: string[] = [];
    const held = new Kysely<Database>({
      dialect: new PostgresDialect({ pool }),
      log: (event) => {
        // The guarded statement reaches the logger as the query object; its toString() is the text.
        const sql: unknown = event.query.sql;
        logged.push(String(sql));
      },
    });
    try {
      for (const guarded of [true, false]) {
        const queue = `queued-behind-rollback-${String(guarded)}.q`;
        const trx = await held.startTransaction().execute();
        // Without getExecutor the adapter cannot tell Kysely's node-postgres connection, so it
        // does not guard: the statement then commits on its own, the gap the guard closes.
        const rollingBack = new Proxy(trx, {
          get(target, key) {
            if (key === 'withoutPlugins') return () => rollingBack;
            if (key === 'getExecutor' && !guarded) return undefined;
            if (key === 'executeQuery')
              return (query: Parameters<typeof target.executeQuery>[0]) => {
                void client?.query('ROLLBACK');
                return target.executeQuery(query);
              };
            const value: unknown = Reflect.get(target, key, target);
            return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
          },
        });
        const outcome = await outbox.publish(fromKysely(rollingBack), queue, 'x').then(
          () => 'committed on its own',
          (error: unknown) => error,
        );
        await trx.rollback().execute();
        const stored = (await outbox.fetchUnprocessed({ queue })).length;
        if (guarded) {
          assert.ok(outcome instanceof NotInTransactionError, String(outcome));
          assert.match(outcome.message, /outbox\.publish\(\): the transaction it was called in ended/);
          assert.equal((outcome.cause as { code?: string }).code, '25P01');
          assert.equal(stored, 0);
        } else {
          assert.equal(outcome, 'committed on its own');
          assert.equal(stored, 1);
        }
      }
      assert.ok(
        logged.some((text) => text.startsWith('INSERT INTO')),
        "Kysely's logger sees the guarded statement's text",
      );
    } finally {
      await held.destroy();
    }
  });

  test("the user's plugins do not touch txoutbox's statements (CamelCasePlugin)", async () => {
    const camel = kysely(db.url, [new CamelCasePlugin()]);
    try {
      await camel.transaction().execute(async (trx) => {
        const id = await outbox.publish(fromKysely(trx), 'camel.q', { a: 1 }, { headers: { h: 'v' } });
        const [row] = await outbox.fetchUnprocessed(fromKysely(trx), { queue: 'camel.q' });
        assert.equal(row?.id, id);
        assert.deepEqual(row.body, { a: 1 });
        assert.equal(row.headers.h, 'v');
        assert.ok(row.nextAttemptAt instanceof Date && !Number.isNaN(row.nextAttemptAt.getTime()));
      });
    } finally {
      await camel.destroy();
    }
  });
});
