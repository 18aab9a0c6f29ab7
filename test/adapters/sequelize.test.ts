/**
 * txoutbox/sequelize against the real sequelize package and the real PostgreSQL: the conformance
 * suite, then what is Sequelize's own — its bind parameters, the handles it refuses, unmanaged
 * and savepoint transactions, why the wake-up follows the pg client rather than afterCommit, and
 * a model's writes committing and rolling back with the outbox row.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { DataTypes, Sequelize, type Transaction } from 'sequelize';

import { fromSequelize } from '../../src/adapters/sequelize/index.js';
import { NotInTransactionError } from '../../src/index.js';
import { adapterConformance, rollbackError, throwToRollBack } from '../support/adapter-conformance.js';
import { useTestDatabase } from '../support/database.js';
import { useWakeWatch } from '../support/wake-watch.js';

const connect = (url: string): Sequelize => new Sequelize(url, { logging: false, pool: { max: 4 } });

adapterConformance(import.meta.url, 'sequelize', {
  wake: 'after-commit',
  setup: (db) => {
    const sequelize = connect(db.url);
    return Promise.resolve({
      inTransaction: (work) => sequelize.transaction((t) => work(fromSequelize(t))),
      rolledBack: (work) =>
        throwToRollBack(() =>
          sequelize.transaction(async (t) => {
            await work(fromSequelize(t));
            throw rollbackError();
          }),
        ),
      wrapNonTransactional: () => fromSequelize(sequelize as unknown as Transaction),
      close: () => sequelize.close(),
    });
  },
});

describe('sequelize: what is its own', () => {
  const db = useTestDatabase(import.meta.url);
  const watch = useWakeWatch(db);
  let sequelize: Sequelize;
  before(() => {
    sequelize = connect(db.url);
    db.onCleanup(() => sequelize.close());
  });

  test('bind parameters: a repeated Buffer byte for byte, a $ that is no placeholder reaches PostgreSQL as written', async () => {
    const bytes = Buffer.from([0, 36, 92, 255]);
    const [row] = await sequelize.transaction((t) =>
      fromSequelize(t).query(`SELECT $2::bytea AS b, $1::text AS t, $2::bytea AS again, $$a$b$$ AS quoted`, ['$1', bytes]),
    );
    assert.deepEqual(row, { b: bytes, t: '$1', again: bytes, quoted: 'a$b' });
  });

  test('refused: the Sequelize instance, an un-awaited transaction, a finished one, anything else', async () => {
    const refused = (handle: unknown, pattern: RegExp) => {
      assert.throws(
        () => fromSequelize(handle as Transaction),
        (error) => error instanceof NotInTransactionError && pattern.test(error.message),
      );
    };
    refused(sequelize, /the Sequelize instance/);
    const pending = sequelize.transaction();
    refused(pending, /await sequelize\.transaction\(\)/);
    const committed = await pending;
    await committed.commit();
    refused(committed, /already finished \(commit\)/);
    const rolledBack = await sequelize.transaction();
    await rolledBack.rollback();
    refused(rolledBack, /already finished \(rollback\)/);
    for (const other of [null, undefined, 'transaction', {}, { afterCommit: () => undefined }]) refused(other, /Fix:/);
  });

  test('an unmanaged transaction: committed → stored and woken after COMMIT; rolled back → nothing', async () => {
    const committed = `unmanaged-commit-${Date.now()}.q`;
    const t = await sequelize.transaction();
    await watch.outbox.publish(fromSequelize(t), committed, 'kept');
    await watch.settle();
    assert.ok(!watch.woken(committed), 'no wake-up before COMMIT');
    await t.commit();
    await watch.listener.waitFor(committed);

    const rolledBack = `unmanaged-rollback-${Date.now()}.q`;
    const other = await sequelize.transaction();
    await watch.outbox.publish(fromSequelize(other), rolledBack, 'dropped');
    await other.rollback();
    await watch.settle();
    assert.ok(!watch.woken(rolledBack));
    assert.equal((await watch.outbox.fetchUnprocessed({ queue: rolledBack })).length, 0);
    assert.equal((await watch.outbox.fetchUnprocessed({ queue: committed })).length, 1);
  });

  test('a savepoint: its "commit" (nothing sent, its afterCommit hooks run) wakes nobody; the outer COMMIT does', async () => {
    const queue = `savepoint-${Date.now()}.q`;
    await sequelize.transaction(async (t) => {
      let savepointHookRan = false;
      await sequelize.transaction({ transaction: t }, async (savepoint) => {
        savepoint.afterCommit(() => {
          savepointHookRan = true;
        });
        await watch.outbox.publish(fromSequelize(savepoint), queue, 'in a savepoint');
      });
      assert.ok(savepointHookRan, "Sequelize ran the savepoint's afterCommit before the transaction committed");
      await watch.settle();
      assert.ok(!watch.woken(queue), 'the transaction is still open: no wake-up yet');
    });
    await watch.listener.waitFor(queue);
  });

  test("without a watchable pg client, the hook is the outermost transaction's afterCommit", async () => {
    const queue = `hook-${Date.now()}.q`;
    await sequelize.transaction(async (t) => {
      await sequelize.transaction({ transaction: t }, async (savepoint) => {
        const hookOnly = { ...fromSequelize(savepoint), pgClient: undefined };
        assert.equal(hookOnly.commitHook?.transaction, t);
        await watch.outbox.publish(hookOnly, queue, 'through the hook');
      });
      await watch.settle();
      assert.ok(!watch.woken(queue), 'keyed on the outermost transaction: no wake-up when the savepoint ends');
    });
    await watch.listener.waitFor(queue);
  });

  test('a COMMIT that fails: Sequelize still runs afterCommit, the watched pg client wakes nobody', async () => {
    await sequelize.query(`CREATE TABLE parents (id int PRIMARY KEY);
      CREATE TABLE children (parent int REFERENCES parents DEFERRABLE INITIALLY DEFERRED)`);
    const queue = `failed-commit-${Date.now()}.q`;
    let afterCommitRan = false;
    const warn = console.warn; // Sequelize warns that it kills the connection of a failed COMMIT
    console.warn = () => undefined;
    try {
      await assert.rejects(
        sequelize.transaction(async (t) => {
          t.afterCommit(() => {
            afterCommitRan = true;
          });
          await sequelize.query('INSERT INTO children VALUES (1)', { transaction: t });
          await watch.outbox.publish(fromSequelize(t), queue, 'never committed');
        }),
        /foreign key/,
      );
    } finally {
      console.warn = warn;
    }
    assert.ok(afterCommitRan, 'Sequelize 6 runs afterCommit hooks in a finally, after a failed COMMIT too');
    await watch.settle();
    assert.ok(!watch.woken(queue), 'no wake-up: the COMMIT was never confirmed');
    assert.equal((await watch.outbox.fetchUnprocessed({ queue })).length, 0);
  });

  test("a model's writes and the outbox row commit and roll back together", async () => {
    const Order = sequelize.define('Order', { total: { type: DataTypes.INTEGER, allowNull: false } }, { tableName: 'orders' });
    await Order.sync();
    const queue = `orders-${Date.now()}.q`;
    await throwToRollBack(() =>
      sequelize.transaction(async (t) => {
        const order = await Order.create({ total: 1 }, { transaction: t });
        await watch.outbox.publish(fromSequelize(t), queue, { id: order.get('id') });
        throw rollbackError();
      }),
    );
    assert.equal(await Order.count(), 0);
    assert.equal((await watch.outbox.fetchUnprocessed({ queue })).length, 0);

    await sequelize.transaction(async (t) => {
      const order = await Order.create({ total: 2 }, { transaction: t });
      await watch.outbox.publish(fromSequelize(t), queue, { id: order.get('id') });
    });
    assert.equal(await Order.count(), 1);
    assert.equal((await watch.outbox.fetchUnprocessed({ queue })).length, 1);
  });
});
