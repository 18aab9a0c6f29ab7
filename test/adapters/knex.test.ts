/**
 * txoutbox/knex against the real knex package and the real PostgreSQL: the conformance suite,
 * then what is Knex's own — the placeholders, the handles it refuses, the non-callback and nested
 * transactions, and its own writes committing and rolling back with the outbox row.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import knexFactory, { type Knex } from 'knex';

import { fromKnex } from '../../src/adapters/knex/index.js';
import { NotInTransactionError } from '../../src/index.js';
import { adapterConformance, rollbackError, throwToRollBack } from '../support/adapter-conformance.js';
import { useTestDatabase } from '../support/database.js';
import { useWakeWatch } from '../support/wake-watch.js';

interface Order {
  id: number;
  total: number;
}

const connect = (url: string): Knex => knexFactory({ client: 'pg', connection: url, pool: { min: 0, max: 4 } });

adapterConformance(import.meta.url, 'knex', {
  wake: 'after-commit',
  setup: (db) => {
    const knex = connect(db.url);
    return Promise.resolve({
      inTransaction: (work) => knex.transaction((trx) => work(fromKnex(trx))),
      rolledBack: (work) =>
        throwToRollBack(() =>
          knex.transaction(async (trx) => {
            await work(fromKnex(trx));
            throw rollbackError();
          }),
        ),
      wrapNonTransactional: () => fromKnex(knex),
      close: () => knex.destroy(),
    });
  },
});

describe('knex: what is its own', () => {
  const db = useTestDatabase(import.meta.url);
  const watch = useWakeWatch(db);
  let knex: Knex;
  before(async () => {
    knex = connect(db.url);
    db.onCleanup(() => knex.destroy());
    await knex.schema.createTable('orders', (table) => {
      table.increments('id');
      table.integer('total').notNullable();
    });
  });

  test('$n becomes ?: a repeated parameter, a Buffer byte for byte, an array bound as one value', async () => {
    const bytes = Buffer.from([0, 1, 63, 92, 255]);
    const [row] = await knex.transaction((trx) =>
      fromKnex(trx).query('SELECT $2::bytea AS b, $1::text AS t, $2::bytea AS again, $3::int[] AS list', [
        'a?',
        bytes,
        [1, 2, 3],
      ]),
    );
    assert.deepEqual(row, { b: bytes, t: 'a?', again: bytes, list: [1, 2, 3] });
  });

  test('a postProcessResponse that camelCases every key, rows included, changes nothing', async () => {
    const camel = (key: string) => key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
    const deep = (value: unknown): unknown =>
      Array.isArray(value)
        ? value.map(deep)
        : value !== null && typeof value === 'object' && !Buffer.isBuffer(value) && !(value instanceof Date)
          ? Object.fromEntries(Object.entries(value).map(([key, inner]) => [camel(key), deep(inner)]))
          : value;
    const camelKnex = knexFactory({ client: 'pg', connection: db.url, pool: { min: 0, max: 1 }, postProcessResponse: deep });
    try {
      const queue = `camel-${Date.now()}.q`;
      const rows = await camelKnex.transaction(async (trx) => {
        const [raw] = (await trx.raw<{ rows: Record<string, unknown>[] }>('SELECT 1 AS next_attempt_at')).rows;
        assert.deepEqual(raw, { nextAttemptAt: 1 }, 'the hook does rename row keys');
        await watch.outbox.publish(fromKnex(trx), queue, 'x', { activateInMs: 60_000 });
        return watch.outbox.fetchUnprocessed(fromKnex(trx), { queue });
      });
      assert.equal(rows.length, 1);
      assert.ok(rows[0]!.nextAttemptAt.getTime() > Date.now(), 'next_attempt_at read back, not Invalid Date');
    } finally {
      await camelKnex.destroy();
    }
  });

  test('refused: the knex instance, an un-awaited transaction, a finished one, anything else', async () => {
    assert.throws(
      () => fromKnex(knex),
      (error) => error instanceof NotInTransactionError && /knex instance/.test(error.message),
    );
    const pending = knex.transaction();
    assert.throws(
      () => fromKnex(pending as unknown as Knex.Transaction),
      (error) => error instanceof NotInTransactionError && /await knex\.transaction\(\)/.test(error.message),
    );
    const finished = await pending;
    await finished.commit();
    assert.throws(
      () => fromKnex(finished),
      (error) => error instanceof NotInTransactionError && /already committed/.test(error.message),
    );
    for (const other of [null, undefined, 'trx', {}, { isTransaction: true }]) {
      assert.throws(() => fromKnex(other as unknown as Knex.Transaction), NotInTransactionError);
    }
  });

  test("pgClient() is the transaction's own connection: same backend, nothing taken from the pool", async () => {
    await knex.transaction(async (trx) => {
      const adapter = fromKnex(trx);
      const pool = (knex.client as { pool: { numUsed(): number } }).pool;
      const used = pool.numUsed();
      const client = (await adapter.pgClient?.()) as { processID?: number } | undefined;
      assert.equal(pool.numUsed(), used, 'no second connection checked out');
      const [row] = await adapter.query('SELECT pg_backend_pid() AS pid', []);
      assert.equal(client?.processID, row?.pid);
    });
  });

  test('a non-callback transaction: committed → stored and woken after COMMIT; rolled back → nothing', async () => {
    const committed = `manual-commit-${Date.now()}.q`;
    const trx = await knex.transaction();
    await watch.outbox.publish(fromKnex(trx), committed, 'kept');
    await watch.settle();
    assert.ok(!watch.listener.payloads.includes(committed), 'no wake-up before COMMIT');
    await trx.commit();
    await watch.listener.waitFor(committed);

    const rolledBack = `manual-rollback-${Date.now()}.q`;
    const other = await knex.transaction();
    await watch.outbox.publish(fromKnex(other), rolledBack, 'dropped');
    await other.rollback();
    await watch.settle();
    assert.ok(!watch.listener.payloads.includes(rolledBack));
    assert.equal((await watch.outbox.fetchUnprocessed({ queue: rolledBack })).length, 0);
    assert.equal((await watch.outbox.fetchUnprocessed({ queue: committed })).length, 1);
  });

  test('cancelling a keyed timer wakes the rows it releases after COMMIT, as a publish does, not inside the transaction', async () => {
    const queue = `released-${Date.now()}.q`;
    await knex.transaction(async (trx) => {
      await watch.outbox.publish(fromKnex(trx), queue, 'timer', { orderingKey: 'k', timerId: 't', activateInMs: 3_600_000 });
      await watch.outbox.publish(fromKnex(trx), queue, 'behind', { orderingKey: 'k' });
    });
    const trx = await knex.transaction();
    const backend = (await trx.raw<{ rows: { pid: number }[] }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
    assert.equal(await watch.outbox.cancelTimer(fromKnex(trx), queue, 't'), true);
    await trx.commit();
    await watch.listener.waitFor(queue);
    const sender = watch.listener.senders[watch.listener.payloads.indexOf(queue)];
    assert.ok(
      backend !== undefined && sender !== backend,
      "sent by the Outbox's notifier after COMMIT, not inside the transaction",
    );
  });

  test('a nested transaction: its RELEASE SAVEPOINT wakes nobody, the outer COMMIT does', async () => {
    const queue = `nested-${Date.now()}.q`;
    await knex.transaction(async (trx) => {
      await trx.transaction(async (nested) => {
        await watch.outbox.publish(fromKnex(nested), queue, 'in a savepoint');
      });
      await watch.settle();
      assert.ok(!watch.listener.payloads.includes(queue), 'the savepoint released, the transaction still open: no wake-up yet');
    });
    await watch.listener.waitFor(queue);
    assert.equal((await watch.outbox.fetchUnprocessed({ queue })).length, 1);
  });

  test("Knex's own writes and the outbox row commit and roll back together", async () => {
    const queue = `orders-${Date.now()}.q`;
    await throwToRollBack(() =>
      knex.transaction(async (trx) => {
        const [order] = await trx<Order>('orders').insert({ total: 1 }).returning('id');
        await watch.outbox.publish(fromKnex(trx), queue, order);
        throw rollbackError();
      }),
    );
    assert.equal((await knex<Order>('orders').count({ n: '*' }))[0]?.n, '0');
    assert.equal((await watch.outbox.fetchUnprocessed({ queue })).length, 0);

    await knex.transaction(async (trx) => {
      const [order] = await trx<Order>('orders').insert({ total: 2 }).returning('id');
      await watch.outbox.publish(fromKnex(trx), queue, order);
    });
    assert.equal((await knex<Order>('orders').count({ n: '*' }))[0]?.n, '1');
    assert.equal((await watch.outbox.fetchUnprocessed({ queue })).length, 1);
  });
});
