/**
 * txoutbox/typeorm against TypeORM 1.1 (`type: 'postgres'` on node-postgres) and the real
 * PostgreSQL, entities declared with EntitySchema. Wake-up: after commit, watched on the
 * QueryRunner's PoolClient.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { DataSource, EntitySchema } from 'typeorm';

import { fromTypeORM, type TypeORMEntityManager } from '../../src/adapters/typeorm/index.js';
import { NotInTransactionError, type Outbox } from '../../src/index.js';
import { adapterConformance, rollbackError, throwToRollBack } from '../support/adapter-conformance.js';
import { useTestDatabase } from '../support/database.js';
import { listen, type Listener } from '../support/listen.js';
import { outboxFactory } from '../support/outboxes.js';
import { inTransaction as pgTransaction } from '../support/transaction.js';

interface Order {
  id: number;
  total: number;
}
// TypeORM declares EntitySchemaOptions as a class but documents (and only reads) a plain literal.
// eslint-disable-next-line @typescript-eslint/no-unsafe-class-instance-assignment
const OrderEntity = new EntitySchema<Order>({
  name: 'Order',
  tableName: 'typeorm_orders',
  columns: { id: { type: Number, primary: true, generated: true }, total: { type: 'int' } },
});

async function connect(url: string): Promise<DataSource> {
  return new DataSource({ type: 'postgres', url, entities: [OrderEntity], poolSize: 4 }).initialize();
}

adapterConformance(import.meta.url, 'typeorm', {
  wake: 'after-commit',
  setup: async (db) => {
    const dataSource = await connect(db.url);
    return {
      inTransaction: (work) => dataSource.transaction((manager) => work(fromTypeORM(manager))),
      rolledBack: (work) =>
        throwToRollBack(() =>
          dataSource.transaction(async (manager) => {
            await work(fromTypeORM(manager));
            throw rollbackError();
          }),
        ),
      wrapNonTransactional: () => fromTypeORM(dataSource.manager),
      close: () => dataSource.destroy(),
    };
  },
});

describe('typeorm: specific', () => {
  const db = useTestDatabase(import.meta.url);
  const outboxes = outboxFactory(db);
  let dataSource: DataSource;
  let outbox: Outbox;
  let listener: Listener;

  before(async () => {
    outbox = outboxes({ pool: db.pool });
    await outbox.migrate();
    outbox.start();
    await db.pool.query('CREATE TABLE typeorm_orders (id serial PRIMARY KEY, total int NOT NULL)');
    dataSource = await connect(db.url);
    listener = await listen(db.url, outbox.channel);
    // Before the file's database is dropped (an after() registered here would run after the drop).
    db.onCleanup(async () => {
      await listener.close();
      await dataSource.destroy();
    });
  });

  const refusesWith = (pattern: RegExp) => (error: unknown) =>
    error instanceof NotInTransactionError && /fromTypeORM\(\)/.test(error.message) && pattern.test(error.message);

  test('refuses dataSource.manager, a QueryRunner before startTransaction() and after its end, naming the fix', async () => {
    assert.throws(() => fromTypeORM(dataSource.manager), refusesWith(/without a QueryRunner.*dataSource\.transaction/s));
    assert.throws(() => fromTypeORM(null as unknown as TypeORMEntityManager), refusesWith(/got null/));
    assert.throws(
      () => fromTypeORM({ query: () => [] } as TypeORMEntityManager),
      refusesWith(/neither an EntityManager nor a QueryRunner/),
    );
    const runner = dataSource.createQueryRunner();
    try {
      assert.throws(() => fromTypeORM(runner), refusesWith(/no active transaction/));
      assert.throws(() => fromTypeORM(runner.manager), refusesWith(/EntityManager whose QueryRunner has no active transaction/));
      await runner.startTransaction();
      const adapter = fromTypeORM(runner);
      await runner.commitTransaction();
      assert.throws(() => fromTypeORM(runner), refusesWith(/no active transaction/));
      // A wrapper kept past its transaction fails instead of autocommitting.
      await assert.rejects(outbox.publish(adapter, 'typeorm.late', 'x'), NotInTransactionError);
    } finally {
      await runner.release();
    }
    assert.throws(() => fromTypeORM(runner), refusesWith(/released/));
    assert.equal((await outbox.fetchUnprocessed({ queue: 'typeorm.late' })).length, 0);
  });

  test('the DataSource or its manager passed straight to publish (no adapter) is refused before anything is sent, autocommit or not', async () => {
    // Reported (review): both have a query(), so they were run as executors: TypeORM ran the INSERT
    // on a pooled connection, committed on its own, then publish failed with a TypeError.
    const queue = `typeorm-direct-${Date.now()}.q`;
    for (const handle of [dataSource, dataSource.manager]) {
      for (const autocommit of [false, true]) {
        await assert.rejects(
          outbox.publish(handle as never, queue, 'x', { autocommit }),
          (error: unknown) => error instanceof NotInTransactionError && /TypeORM|data layer/.test(error.message),
        );
      }
    }
    assert.equal((await outbox.fetchUnprocessed({ queue })).length, 0);
  });

  test('a QueryRunner after startTransaction(), and its manager: committed together with the entity', async () => {
    const runner = dataSource.createQueryRunner();
    try {
      await runner.startTransaction();
      const order = await runner.manager.save(OrderEntity, { total: 5101 });
      await outbox.publish(fromTypeORM(runner), 'typeorm.runner', { orderId: order.id });
      await outbox.publish(fromTypeORM(runner.manager), 'typeorm.runner', { orderId: order.id, again: true });
      await runner.commitTransaction();
    } finally {
      await runner.release();
    }
    await listener.waitFor('typeorm.runner');
    assert.equal(await dataSource.manager.countBy(OrderEntity, { total: 5101 }), 1);
    assert.equal((await outbox.fetchUnprocessed({ queue: 'typeorm.runner' })).length, 2);
  });

  test("the entity saved through TypeORM's manager and the event roll back together", async () => {
    await throwToRollBack(() =>
      dataSource.transaction(async (manager) => {
        await manager.save(OrderEntity, { total: 5102 });
        await outbox.publish(fromTypeORM(manager), 'typeorm.rolled-back', 'x');
        throw rollbackError();
      }),
    );
    assert.equal(await dataSource.manager.countBy(OrderEntity, { total: 5102 }), 0);
    assert.equal((await outbox.fetchUnprocessed({ queue: 'typeorm.rolled-back' })).length, 0);
  });

  test('cancelTimer: the DELETE … RETURNING result is read as rows, not [rows, count]', async () => {
    const timerId = `t-${Date.now()}`;
    await dataSource.transaction((manager) =>
      outbox.publish(fromTypeORM(manager), 'typeorm.timer', 'x', { timerId, activateInMs: 60_000 }),
    );
    assert.deepEqual(
      await dataSource.transaction((manager) => manager.query('DELETE FROM typeorm_orders WHERE false RETURNING id')),
      [[], 0],
      "TypeORM's own shape, which the adapter does not use",
    );
    assert.equal(
      await dataSource.transaction((manager) => outbox.cancelTimer(fromTypeORM(manager), 'typeorm.timer', timerId)),
      true,
    );
    assert.equal(
      await dataSource.transaction((manager) => outbox.cancelTimer(fromTypeORM(manager), 'typeorm.timer', timerId)),
      false,
    );
  });

  test('nested transactions (savepoints): no wake-up at RELEASE SAVEPOINT, one after the outermost COMMIT', async () => {
    const queue = `typeorm-nested-${Date.now()}.q`;
    await dataSource.transaction(async (manager) => {
      await manager.transaction(async (inner) => {
        await outbox.publish(fromTypeORM(inner), queue, 'released savepoint');
      });
      await throwToRollBack(() =>
        manager.transaction(async (inner) => {
          await outbox.publish(fromTypeORM(inner), 'typeorm.discarded', 'rolled-back savepoint');
          throw rollbackError();
        }),
      );
      // The inner transaction is released; a committed sentinel's wake-up arrives, ours not yet.
      await pgTransaction(db.pool, (client) => outbox.publish(client, 'typeorm.sentinel', 'during'));
      await listener.waitFor('typeorm.sentinel');
      assert.ok(!listener.payloads.includes(queue), 'no wake-up before the outermost COMMIT');
    });
    await listener.waitFor(queue);
    assert.equal((await outbox.fetchUnprocessed({ queue: 'typeorm.discarded' })).length, 0);
  });

  test("a publish issued while TypeORM's ROLLBACK is on the wire is refused, never autocommitted", async () => {
    // Reported (review): TypeORM clears isTransactionActive only once ROLLBACK has answered, so the
    // adapter's check passed, and the INSERT queued behind the ROLLBACK ran on its own (and woke consumers).
    const runner = dataSource.createQueryRunner();
    await runner.startTransaction();
    const client = (await runner.connect()) as { query: (...args: unknown[]) => unknown };
    let rollbackSent = false;
    const query = client.query.bind(client);
    client.query = (...args: unknown[]) => {
      if (args[0] === 'ROLLBACK') rollbackSent = true;
      return query(...args);
    };
    const late = outboxes({
      pool: db.pool,
      middlewares: [
        {
          publish: async (_ctx, next) => {
            const rollingBack = runner.rollbackTransaction();
            rollingBack.catch(() => undefined);
            // Until TypeORM has sent its ROLLBACK (microtasks first: its answer must still be on the way).
            for (let i = 0; !rollbackSent; i += 1) await (i < 1000 ? Promise.resolve() : new Promise(setImmediate));
            await next();
          },
        },
      ],
    });
    const queue = `typeorm-late-${Date.now()}.q`;
    const outcome = await late.publish(fromTypeORM(runner), queue, 'x').then(
      () => 'resolved',
      (error: unknown) => error,
    );
    await runner.release();
    assert.ok(outcome instanceof NotInTransactionError, String(outcome));
    assert.equal((await outbox.fetchUnprocessed({ queue })).length, 0, 'committed on its own after the ROLLBACK');
  });

  test("the QueryRunner's connection is a node-postgres client whose COMMIT is watched", async () => {
    await dataSource.transaction(async (manager) => {
      const client = await fromTypeORM(manager).pgClient?.();
      assert.ok(client !== undefined);
      assert.equal((client as { getTransactionStatus(): string }).getTransactionStatus(), 'T');
      assert.equal(typeof (client as { connection?: { on?: unknown } }).connection?.on, 'function');
    });
  });
});
