/**
 * The TransactionAdapter seam itself, through adapters written by hand over a node-postgres
 * client: one per wake-up route (the pg client, an after-commit hook, neither). The library
 * adapters (test/adapters/<library>.test.ts) run the same conformance suite.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';

import { NotInTransactionError, type TransactionAdapter } from '../../src/index.js';
import { adapterConformance, type DataLayerUnderTest } from '../support/adapter-conformance.js';
import { type TestDatabase, useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';

type Route = 'pg-client' | 'hook' | 'none';

/** A tiny "data layer": BEGIN/COMMIT on a pooled client, after-commit callbacks of its own. */
function handWritten(route: Route) {
  return (db: TestDatabase): Promise<DataLayerUnderTest> => {
    const pool = new pg.Pool({ connectionString: db.url, max: 2 });
    // A careful layer refuses a statement issued once it has sent COMMIT or ROLLBACK (as Knex, TypeORM,
    // Sequelize and Prisma do); one over a node-postgres client may hand it over instead, and txoutbox
    // checks at dispatch (statementsOnPgClient).
    const wrap = (client: pg.PoolClient, callbacks: (() => void)[], ended: () => boolean): TransactionAdapter => ({
      txoutboxAdapter: `hand-written (${route})`,
      query: async (text, values) => {
        if (ended()) throw new Error('this transaction has ended');
        return (await client.query(text, [...values])).rows as Record<string, unknown>[];
      },
      ...(route === 'pg-client' ? { pgClient: () => Promise.resolve(client), statementsOnPgClient: true } : {}),
      ...(route === 'hook'
        ? { commitHook: { transaction: callbacks, onCommit: (callback: () => void) => callbacks.push(callback) } }
        : {}),
    });
    const run = async <T>(work: (target: TransactionAdapter) => Promise<T>, commit: boolean): Promise<T> => {
      const client = await pool.connect();
      const callbacks: (() => void)[] = [];
      let ended = false;
      try {
        await client.query('BEGIN');
        const result = await work(wrap(client, callbacks, () => ended && route !== 'pg-client'));
        ended = true;
        await client.query(commit ? 'COMMIT' : 'ROLLBACK');
        if (commit) for (const callback of callbacks) callback();
        return result;
      } catch (error) {
        ended = true;
        await client.query('ROLLBACK');
        throw error;
      } finally {
        client.release();
      }
    };
    return Promise.resolve({
      inTransaction: (work) => run(work, true),
      rolledBack: async (work) => {
        await run(work, false);
      },
      wrapNonTransactional: () => {
        throw new NotInTransactionError('a hand-written adapter has no non-transactional handle: nothing to refuse');
      },
      close: () => pool.end(),
    });
  };
}

adapterConformance(import.meta.url, 'hand-written adapter over the pg client', {
  wake: 'after-commit',
  setup: handWritten('pg-client'),
});
adapterConformance(import.meta.url, 'hand-written adapter with an after-commit hook', {
  wake: 'after-commit',
  setup: handWritten('hook'),
});
adapterConformance(import.meta.url, 'hand-written adapter with neither', { wake: 'in-transaction', setup: handWritten('none') });

describe('an adapter whose pg client is back to idle or a pool', () => {
  const db = useTestDatabase(import.meta.url);
  const outbox = outboxFactory(db)({ pool: db.pool });

  test("an adapter whose query() answers with something other than the rows: a TypeError naming it, not 'no rows'", async () => {
    // Review finding: the pg Result (or a count) read as no rows: a publish as a timer conflict
    // (null), a batch as no ids, a cancel as not cancelled, and no wake-up for committed rows.
    await outbox.migrate();
    const client = await db.pool.connect();
    try {
      const resultNotRows = {
        txoutboxAdapter: 'hand-written (Result)',
        query: async (text: string, values: readonly unknown[]) => client.query(text, [...values]),
      } as unknown as TransactionAdapter;
      await client.query('BEGIN');
      for (const call of [
        () => outbox.publish(resultNotRows, 'shape.q', 'x'),
        () => outbox.publishBatch(resultNotRows, 'shape.q', ['y']),
        () => outbox.cancelTimer(resultNotRows, 'shape.q', 't'),
      ]) {
        await assert.rejects(
          call(),
          (error: unknown) =>
            error instanceof TypeError &&
            /hand-written \(Result\) adapter's query\(\) resolved to object, not an array of rows/.test(error.message),
        );
      }
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });

  test('a wrapper kept past its transaction, or over a pool, is refused before any statement: nothing is stored', async () => {
    await outbox.migrate();
    const client = await db.pool.connect();
    try {
      const kept: TransactionAdapter = {
        txoutboxAdapter: 'hand-written (kept)',
        query: async (text, values) => (await client.query(text, [...values])).rows as Record<string, unknown>[],
        pgClient: () => Promise.resolve(client),
      };
      await client.query('BEGIN');
      await client.query('COMMIT');
      await assert.rejects(outbox.publish(kept, 'kept.q', 'late'), NotInTransactionError);
      await assert.rejects(outbox.fetchUnprocessed(kept), NotInTransactionError);
      const overPool: TransactionAdapter = { ...kept, pgClient: () => Promise.resolve(db.pool) };
      await assert.rejects(outbox.publishBatch(overPool, 'kept.q', ['a']), NotInTransactionError);
      assert.equal((await outbox.fetchUnprocessed({ queue: 'kept.q' })).length, 0);
    } finally {
      client.release();
    }
  });

  test("statementsOnPgClient: a statement queued behind the layer's ROLLBACK is refused at dispatch, never run on its own", async () => {
    await outbox.migrate();
    const client = await db.pool.connect();
    try {
      const rollingBack = (statementsOnPgClient: boolean): TransactionAdapter => ({
        txoutboxAdapter: 'hand-written (rolling back)',
        query: async (text, values) => (await client.query(text, [...values])).rows as Record<string, unknown>[],
        // The layer's ROLLBACK is sent just before publish's statement: the status still reads T
        // (unanswered), so only a check at dispatch can see the transaction has ended.
        pgClient: () => {
          void client.query('ROLLBACK');
          return Promise.resolve(client);
        },
        statementsOnPgClient,
      });
      await client.query('BEGIN');
      await assert.rejects(outbox.publish(rollingBack(true), 'behind.q', 'x'), NotInTransactionError);
      assert.equal((await outbox.fetchUnprocessed({ queue: 'behind.q' })).length, 0);
      // Through the layer's own query, the same statement ran after the ROLLBACK, on its own.
      await client.query('BEGIN');
      await outbox.publish(rollingBack(false), 'behind.q', 'x');
      assert.equal((await outbox.fetchUnprocessed({ queue: 'behind.q' })).length, 1, 'the gap statementsOnPgClient closes');
    } finally {
      client.release();
    }
  });
});
