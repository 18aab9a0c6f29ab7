/**
 * txoutbox/mikro-orm against the real @mikro-orm/postgresql and the real PostgreSQL: the
 * conformance suite (after-commit, through the afterTransactionCommit event), then what is
 * MikroORM's own — em.begin()/commit(), the global em inside a transaction, nested transactions
 * (savepoints), the refused handles, values MikroORM inlines as literals, and the ORM's own flush
 * committing or rolling back with the outbox row.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { defineEntity, MikroORM, p } from '@mikro-orm/postgresql';

import { fromMikroORM } from '../../src/adapters/mikro-orm/index.js';
import { NotInTransactionError, type Outbox } from '../../src/index.js';
import { isTransactionAdapter, type TransactionAdapter } from '../../src/producer/executor.js';
import { adapterConformance, rollbackError, throwToRollBack } from '../support/adapter-conformance.js';
import { useTestDatabase } from '../support/database.js';
import { listen, type Listener } from '../support/listen.js';
import { outboxFactory } from '../support/outboxes.js';
import { inTransaction as pgTransaction } from '../support/transaction.js';

const Order = defineEntity({
  name: 'Order',
  tableName: 'orders',
  properties: { id: p.integer().primary().autoincrement(), total: p.integer() },
});

function init(url: string) {
  return MikroORM.init({ clientUrl: url, entities: [Order], pool: { max: 4 } });
}
type Orm = Awaited<ReturnType<typeof init>>;

adapterConformance(import.meta.url, 'mikro-orm', {
  wake: 'after-commit',
  setup: async (db) => {
    const orm = await init(db.url);
    return {
      inTransaction: (work) => orm.em.fork().transactional((em) => work(fromMikroORM(em))),
      rolledBack: (work) =>
        throwToRollBack(() =>
          orm.em.fork().transactional(async (em) => {
            await work(fromMikroORM(em));
            throw rollbackError();
          }),
        ),
      wrapNonTransactional: () => fromMikroORM(orm.em.fork()),
      close: () => orm.close(true),
    };
  },
});

async function backendPid(target: TransactionAdapter): Promise<number> {
  const [row] = await target.query('SELECT pg_backend_pid() AS pid', []);
  return Number(row?.pid);
}

// Its own database, opened at the file's root so it is dropped after the describe's hooks closed its connections.
const db = useTestDatabase(import.meta.url);
const outboxes = outboxFactory(db);

describe('mikro-orm: what is specific to it', () => {
  let outbox: Outbox;
  let orm: Orm;
  let listener: Listener;

  before(async () => {
    outbox = outboxes({ pool: db.pool });
    await outbox.migrate();
    await db.pool.query('CREATE TABLE orders (id serial PRIMARY KEY, total int NOT NULL)');
    orm = await init(db.url);
    listener = await listen(db.url, outbox.channel);
  });
  after(async () => {
    await listener.close();
    await orm.close(true);
  });

  /** A committed sentinel's wake-up: notifications arrive in commit order, so anything due before it has arrived. */
  async function sentinel(name: string): Promise<void> {
    await pgTransaction(db.pool, (client) => outbox.publish(client, name, 'x'));
    await listener.waitFor(name);
  }

  test('refuses an EntityManager outside a transaction, and one whose transaction has ended', async () => {
    assert.throws(
      () => fromMikroORM(orm.em.fork()),
      (error) =>
        error instanceof NotInTransactionError &&
        /isInTransaction\(\) is false/.test(error.message) &&
        /em\.transactional/.test(error.message),
    );
    assert.throws(() => fromMikroORM(orm.em), NotInTransactionError, 'the global em outside any transaction');
    let kept: Parameters<typeof fromMikroORM>[0] | undefined;
    await orm.em.fork().transactional((em) => {
      kept = em;
      return Promise.resolve();
    });
    assert.ok(kept !== undefined);
    assert.throws(() => fromMikroORM(kept!), NotInTransactionError, "the callback's em after its transaction committed");
    const fork = orm.em.fork();
    await fork.begin();
    await fork.rollback();
    assert.throws(() => fromMikroORM(fork), NotInTransactionError, 'a fork after rollback()');
    assert.throws(() => fromMikroORM(null as never), NotInTransactionError);
  });

  test("the ORM's own flush and the outbox row commit together, and roll back together", async () => {
    const id = await orm.em.fork().transactional(async (em) => {
      em.create(Order, { total: 42 });
      await em.flush();
      return outbox.publish(fromMikroORM(em), 'orders.q', { total: 42 });
    });
    assert.deepEqual(
      (await outbox.fetchUnprocessed({ queue: 'orders.q' })).map((row) => row.id),
      [id],
    );
    await throwToRollBack(() =>
      orm.em.fork().transactional(async (em) => {
        em.create(Order, { total: 7 });
        await em.flush();
        await outbox.publish(fromMikroORM(em), 'orders.q', 'never');
        throw rollbackError();
      }),
    );
    assert.equal((await db.pool.query('SELECT 1 FROM orders WHERE total = 7')).rowCount, 0);
    assert.equal((await outbox.fetchUnprocessed({ queue: 'orders.q' })).length, 1);
  });

  test('em.begin() … em.commit() on a fork: woken after COMMIT by the notifier; em.rollback(): nothing', async () => {
    const em = orm.em.fork();
    await em.begin();
    const adapter = fromMikroORM(em);
    const pid = await backendPid(adapter);
    await outbox.publish(adapter, 'begin-commit.q', 'x');
    await sentinel('sentinel-begin.q');
    assert.ok(!listener.payloads.includes('begin-commit.q'), 'no wake-up before COMMIT');
    await em.commit();
    await listener.waitFor('begin-commit.q');
    assert.notEqual(listener.senders[listener.payloads.indexOf('begin-commit.q')], pid);

    const abandoned = orm.em.fork();
    await abandoned.begin();
    await outbox.publish(fromMikroORM(abandoned), 'begin-rollback.q', 'never');
    await abandoned.rollback();
    await sentinel('sentinel-rollback.q');
    assert.ok(!listener.payloads.includes('begin-rollback.q'));
    assert.equal((await outbox.fetchUnprocessed({ queue: 'begin-rollback.q' })).length, 0);
  });

  test('the global orm.em inside em.transactional() resolves to the transaction, and is woken after its COMMIT', async () => {
    // A fresh ORM: its global EventManager has never carried the adapter's subscriber, so only a
    // subscription on the transaction's own fork (whose EventManager is cloned at its start) hears the commit.
    const fresh = await init(db.url);
    try {
      await fresh.em.transactional(async () => {
        const adapter = fromMikroORM(fresh.em);
        await outbox.publish(adapter, 'global-em.q', 'x');
        await sentinel('sentinel-global.q');
        assert.ok(!listener.payloads.includes('global-em.q'));
      });
      await listener.waitFor('global-em.q');
    } finally {
      await fresh.close(true);
    }
  });

  test('nested transactions: a savepoint rides in the statement; nothing wakes before the outermost COMMIT', async () => {
    await orm.em.fork().transactional(async (outer) => {
      const outerAdapter = fromMikroORM(outer);
      assert.ok(outerAdapter.commitHook !== undefined, 'the outermost transaction has the after-commit hook');
      await outbox.publish(outerAdapter, 'nested-outer.q', 'outer');
      await outer.transactional(async (inner) => {
        const innerAdapter = fromMikroORM(inner);
        assert.ok(isTransactionAdapter(innerAdapter));
        assert.equal(innerAdapter.commitHook, undefined, 'a savepoint cannot name its outermost transaction');
        await outbox.publish(innerAdapter, 'nested-inner.q', 'inner');
      });
      await throwToRollBack(() =>
        outer.transactional(async (inner) => {
          await outbox.publish(fromMikroORM(inner), 'nested-discarded.q', 'never');
          throw rollbackError();
        }),
      );
      // Both savepoints are released or rolled back by now: neither woke anybody.
      await sentinel('sentinel-nested.q');
      assert.ok(!listener.payloads.includes('nested-outer.q'));
      assert.ok(!listener.payloads.includes('nested-inner.q'));
    });
    await listener.waitFor('nested-outer.q');
    await listener.waitFor('nested-inner.q');
    await sentinel('sentinel-nested-after.q');
    assert.ok(!listener.payloads.includes('nested-discarded.q'));
    assert.equal((await outbox.fetchUnprocessed({ queue: 'nested-discarded.q' })).length, 0);
  });

  test('values MikroORM inlines as literals come back byte for byte: quotes, backslashes, ?, $1, every byte', async () => {
    const tricky = `it's a \\ test? $1 ?? \\? '' E'x' $$ -- /* */`;
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const ids = await orm.em
      .fork()
      .transactional(async (em) => [
        await outbox.publish(fromMikroORM(em), 'literal.q', tricky, { headers: { h: tricky } }),
        await outbox.publish(fromMikroORM(em), 'literal.q', bytes),
      ]);
    const rows = await outbox.fetchUnprocessed({ queue: 'literal.q' });
    assert.deepEqual(
      rows.map((row) => row.id),
      ids,
    );
    assert.equal(rows[0]?.body, tricky);
    assert.equal(rows[0]?.headers.h, tricky);
    assert.deepEqual(rows[1]?.payload, bytes);
  });
});
