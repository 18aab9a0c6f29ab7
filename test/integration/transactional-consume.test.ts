import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { drizzle } from 'drizzle-orm/node-postgres';
import { integer, pgTable, text } from 'drizzle-orm/pg-core';
import knex from 'knex';
import { Kysely, PostgresDialect, type PostgresPool, type PostgresPoolClient } from 'kysely';
import pg from 'pg';

import {
  CAUSATION_ID_HEADER,
  ConstantRetry,
  type HandlerContext,
  InvalidOptionError,
  LeaseLostError,
  type Message,
  NotInTransactionError,
} from '../../src/index.js';
import { tracingMiddleware } from '../../src/opentelemetry/index.js';
import { ClaimDelayPool } from '../support/claim-delay-pool.js';
import { useTestDatabase } from '../support/database.js';
import { killFixtureWhenReady } from '../support/kill-fixture.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const QUICK_RETRY = { retry: new ConstantRetry({ delayMs: 10, maxAttempts: 5 }) };

/** A promise with its resolve, to hold a handler until the test lets it go. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** A side table the handlers write to: one row per run that committed. */
async function sideTable(name: string): Promise<string> {
  await db.pool.query(`CREATE TABLE ${name} (message_id text NOT NULL, delivery int NOT NULL, holder text NOT NULL)`);
  return name;
}

async function sideRows(table: string): Promise<{ message_id: string; delivery: number; holder: string }[]> {
  const { rows } = await db.pool.query<{ message_id: string; delivery: number; holder: string }>(
    `SELECT message_id, delivery, holder FROM ${table} ORDER BY delivery`,
  );
  return rows;
}

interface FollowUpRow {
  id: string;
  headers: Record<string, string>;
  payload: Buffer;
}

async function followUps(table: string, queue: string): Promise<FollowUpRow[]> {
  const { rows } = await db.pool.query<FollowUpRow>(`SELECT id, headers, payload FROM ${table} WHERE queue = $1 ORDER BY id`, [
    queue,
  ]);
  return rows;
}

// The API's globals, as an application's SDK setup would install them; removed after this file.
before(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
});
after(() => {
  context.disable();
  propagation.disable();
  trace.disable();
});

/** The handler's work: a side row and a follow-up, both in ctx.client's transaction. */
async function writeEffects(side: string, holder: string, message: Message, ctx: HandlerContext): Promise<void> {
  await ctx.client.query(`INSERT INTO ${side} (message_id, delivery, holder) VALUES ($1, $2, $3)`, [
    message.id,
    message.deliveriesCount,
    holder,
  ]);
  await ctx.publish('tc.followup', { cause: message.id, holder });
}

/** A consume middleware that holds every run after next() until `stuck` opens; `afterNext` opens first. */
function middlewareStuckAfterNext() {
  const stuck = gate();
  const afterNext = gate();
  const stuckAfterNext = {
    name: 'stuck-after-next',
    consume: async (_ctx: unknown, next: () => Promise<unknown>) => {
      await next();
      afterNext.open();
      await stuck.promise;
    },
  };
  return { stuck, afterNext, stuckAfterNext };
}

/** How many of `queue`'s rows another transaction can lock now (0: a delivery holds them). */
async function lockableRows(table: string, queue: string): Promise<number> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    const { rowCount } = await client.query(`SELECT id FROM ${table} WHERE queue = $1 FOR UPDATE SKIP LOCKED`, [queue]);
    return rowCount ?? 0;
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}

describe('transactional consume', () => {
  test('success: the side write, the follow-up (correlation-id, causation-id) and the ack commit together', async () => {
    const table = 'tc_ok';
    const side = await sideTable('tc_ok_side');
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table);
    let seenInside: number | undefined;
    outbox.subscribe(
      'tc.work',
      async (message, ctx) => {
        await writeEffects(side, 'only', message, ctx);
        // Not yet visible outside the transaction: nothing is committed before the ack.
        seenInside = (await sideRows(side)).length;
      },
      { transactional: true, ...FAST_POLL },
    );
    outbox.start();
    const [parentId] = await inTransaction(db.pool, async (client) => [
      await outbox.publish(client, 'tc.work', { n: 1 }, { correlationId: 'conversation-1' }),
    ]);
    await log.waitFor('acked');
    assert.equal(seenInside, 0, 'the handler ran uncommitted');
    assert.equal(await remaining(db.pool, 'tc.work', table), 0, 'acked: the row is gone');
    assert.deepEqual(
      (await sideRows(side)).map((r) => r.message_id),
      [parentId],
    );
    const [followUp, ...more] = await followUps(table, 'tc.followup');
    assert.equal(more.length, 0);
    assert.equal(followUp?.headers['correlation-id'], 'conversation-1', "the parent's correlation id");
    assert.equal(followUp?.headers[CAUSATION_ID_HEADER], parentId, "causation-id: the parent's id");
    assert.equal(log.of('lease_lost').length, 0);
  });

  test('a backend killed after the writes, before the commit: nothing of that run is left; the redelivery writes once', async () => {
    const table = 'tc_crash';
    const side = await sideTable('tc_crash_side');
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table);
    const wrote = gate();
    const release = gate();
    let firstPid: number | undefined;
    outbox.subscribe(
      'tc.work',
      async (message, ctx) => {
        await writeEffects(side, 'any', message, ctx);
        if (message.deliveriesCount === 1 && message.attemptsCount === 0) {
          const { rows } = await ctx.client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
          firstPid = rows[0]?.pid;
          wrote.open();
          await release.promise;
        }
      },
      { transactional: true, ...QUICK_RETRY, ...FAST_POLL },
    );
    outbox.start();
    const [id] = await publishCommitted(outbox, db.pool, 'tc.work', [{ n: 1 }]);
    await wrote.promise;
    // The crash: the server loses the delivery's connection mid-transaction, as when the process dies.
    await db.pool.query('SELECT pg_terminate_backend($1)', [firstPid]);
    await waitFor(async () => {
      const { rows } = await db.pool.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [firstPid]);
      return rows.length === 0;
    });
    assert.deepEqual(await sideRows(side), [], 'the killed run wrote nothing');
    assert.deepEqual(await followUps(table, 'tc.followup'), [], 'and published nothing');
    assert.equal(await remaining(db.pool, 'tc.work', table), 1, 'the row is still there');
    release.open();

    await log.waitFor('acked');
    const rows = await sideRows(side);
    assert.equal(rows.length, 1, 'the redelivery wrote once');
    assert.equal(rows[0]?.message_id, id);
    assert.equal((await followUps(table, 'tc.followup')).length, 1, 'and published once');
    assert.equal(await remaining(db.pool, 'tc.work', table), 0);
  });

  /** Runs the child until its handler wrote, SIGKILLs it, and lets this process's subscription redeliver. */
  async function killedMidHandler(table: string, mode: 'transactional' | 'plain') {
    const side = await sideTable(`${table}_side`);
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table);
    const [id] = await publishCommitted(outbox, db.pool, 'tc.work', [{ n: 1 }]);
    const leaseTtlMs = 1000;
    await killFixtureWhenReady('test/fixtures/transactional-child.fixture.ts', [db.url, table, side, String(leaseTtlMs), mode]);
    // The server rolls back a transaction whose connection closed: wait until no session of it is left.
    await waitFor(
      async () =>
        (
          await db.pool.query(
            `SELECT 1 FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND datname = current_database()`,
          )
        ).rows.length === 0,
      { what: 'the killed transaction ended' },
    );
    const afterCrash = { side: await sideRows(side), followUps: await followUps(table, 'tc.followup') };
    assert.equal(await remaining(db.pool, 'tc.work', table), 1, 'the row is still there, leased by the dead process');
    outbox.subscribe(
      'tc.work',
      async (message, ctx) => {
        const client = mode === 'transactional' ? ctx.client : await db.pool.connect();
        try {
          if (mode === 'plain') await client.query('BEGIN');
          await client.query(`INSERT INTO ${side} (message_id, delivery, holder) VALUES ($1, $2, 'survivor')`, [
            message.id,
            message.deliveriesCount,
          ]);
          await outbox.publish(client, 'tc.followup', { cause: message.id }, ctx.causedBy());
          if (mode === 'plain') await client.query('COMMIT');
        } finally {
          if (mode === 'plain') client.release();
        }
      },
      { transactional: mode === 'transactional', leaseTtlMs, ...FAST_POLL },
    );
    outbox.start();
    await log.waitFor('acked');
    return { id, afterCrash, side: await sideRows(side), followUps: await followUps(table, 'tc.followup') };
  }

  test('reproduction (plain subscription): effects committed before a crash are written again by the redelivery', async () => {
    const { id, afterCrash, side, followUps: published } = await killedMidHandler('tc_sigkill_plain', 'plain');
    assert.equal(afterCrash.side.length, 1, 'the killed run had committed its effects');
    assert.deepEqual(
      side.map((r) => [r.message_id, r.holder]),
      [
        [id, 'child'],
        [id, 'survivor'],
      ],
      'twice: the crash came between the handler’s commit and the ack',
    );
    assert.equal(published.length, 2, 'and the follow-up twice');
  });

  test('a process SIGKILLed after its transactional handler wrote, before the commit: nothing of it is left; the redelivery writes once', async () => {
    const { id, afterCrash, side, followUps: published } = await killedMidHandler('tc_sigkill', 'transactional');
    assert.deepEqual(afterCrash, { side: [], followUps: [] }, 'the killed run left nothing');
    assert.deepEqual(
      side.map((r) => [r.message_id, r.delivery, r.holder]),
      [[id, 2, 'survivor']],
      'the redelivery (after the lease expired) wrote once',
    );
    assert.equal(published.length, 1);
    assert.equal(published[0]?.headers[CAUSATION_ID_HEADER], id);
  });

  test('two holders racing on an expired lease: the stale run is aborted at its lease’s end, one set of effects, lease_lost', async () => {
    const table = 'tc_race';
    const side = await sideTable('tc_race_side');
    // Two instances with separate pools, as two processes would have.
    const otherPool = new pg.Pool({ connectionString: db.url, max: 4 });
    db.onCleanup(() => otherPool.end());
    const stale = await migratedOutbox(newOutbox, db.pool, table);
    const fresh = await migratedOutbox(newOutbox, otherPool, table);
    const staleWrote = gate();
    const staleGo = gate();
    const options = { transactional: true, leaseTtlMs: 300, concurrency: 1, fetchBatchSize: 1, ...FAST_POLL } as const;
    stale.outbox.subscribe(
      'tc.work',
      async (message, ctx) => {
        await writeEffects(side, 'stale', message, ctx);
        if (message.deliveriesCount > 1) return;
        staleWrote.open();
        await staleGo.promise; // outlives its 300 ms lease
      },
      options,
    );
    stale.outbox.start();
    await publishCommitted(stale.outbox, db.pool, 'tc.work', [{ n: 1 }]);
    await staleWrote.promise;

    fresh.outbox.subscribe(
      'tc.work',
      async (message, ctx) => {
        await writeEffects(side, 'fresh', message, ctx);
      },
      options,
    );
    fresh.outbox.start();
    await waitFor(() => stale.log.of('acked').length + fresh.log.of('acked').length === 1, {
      what: 'the re-claimed delivery committed',
    });
    staleGo.open();
    const [lost] = await stale.log.waitFor('lease_lost');
    // Its lease ran out with the row locked: the delivery was aborted (its transaction closed, so
    // the fresh claim could take the row) and ends as lease_lost, with no outcome write.
    assert.equal(lost?.phase, 'terminal');
    assert.equal(lost?.deliveriesCount, 1, 'the first, stale, delivery is the one fenced off');
    assert.equal(newOutbox.logger.messages('warn').filter((m) => m.includes('outlived its lease with its row locked')).length, 1);

    const rows = await sideRows(side);
    assert.equal(rows.length, 1, 'one set of effects');
    assert.ok(rows[0]!.delivery > 1, 'the newer holder’s');
    assert.equal((await followUps(table, 'tc.followup')).length, 1, 'one follow-up');
    const acks = [...stale.log.of('acked'), ...fresh.log.of('acked')];
    assert.equal(acks.length, 1);
    assert.equal(await remaining(db.pool, 'tc.work', table), 0);
  });

  test('a handler that throws after writing leaves nothing; the retry writes once', async () => {
    const table = 'tc_throw';
    const side = await sideTable('tc_throw_side');
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table);
    outbox.subscribe(
      'tc.work',
      async (message, ctx) => {
        await writeEffects(side, 'any', message, ctx);
        if (message.attemptsCount === 0) throw new Error('after the writes');
      },
      { transactional: true, ...QUICK_RETRY, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'tc.work', [{ n: 1 }]);
    await log.waitFor('acked');
    assert.equal(log.of('nacked_retried').length, 1);
    const rows = await sideRows(side);
    assert.deepEqual(
      rows.map((r) => r.delivery),
      [2],
      'only the second run’s write: the first was rolled back',
    );
    assert.equal((await followUps(table, 'tc.followup')).length, 1);
  });

  test('a failed run keeps the row locked until its retry write: a competing claim between the two passes it by', async () => {
    const table = 'tc_failed_lock';
    const side = await sideTable('tc_failed_lock_side');
    const competitor = new pg.Pool({ connectionString: db.url, max: 1 });
    db.onCleanup(() => competitor.end());
    const competed: number[] = [];
    // Runs after the handler's run ended and before its outcome is written: what a competitor's
    // claim (every lease expired to it, as to a run under renewal that outlived leaseTtlMs) would
    // take right then, by the claim's own SKIP LOCKED.
    const competingClaim = {
      name: 'competing-claim',
      consume: async (ctx: { messageId: string }, next: () => Promise<unknown>) => {
        await next();
        const { rowCount } = await competitor.query(
          `UPDATE ${table} SET acquired_token = gen_random_uuid(), acquired_at = now()
            WHERE id = (SELECT id FROM ${table} WHERE id = $1 FOR UPDATE SKIP LOCKED)`,
          [ctx.messageId],
        );
        competed.push(rowCount ?? 0);
      },
    };
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table, { middlewares: [competingClaim] });
    outbox.subscribe(
      'tc.work',
      async (message, ctx) => {
        await writeEffects(side, 'any', message, ctx);
        throw new Error('after the writes');
      },
      { transactional: true, retry: new ConstantRetry({ delayMs: 60_000, maxAttempts: 5 }), ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'tc.work', [{ n: 1 }]);
    await log.waitFor('nacked_retried');
    assert.deepEqual(competed, [0], 'the competing claim found the row locked');
    assert.equal(log.of('lease_lost').length, 0);
    const { rows } = await db.pool.query<{ attempts_count: number; last_exception_type: string; acquired_token: string | null }>(
      `SELECT attempts_count, last_exception_type, acquired_token FROM ${table} WHERE queue = 'tc.work'`,
    );
    assert.deepEqual(rows, [{ attempts_count: 1, last_exception_type: 'Error', acquired_token: null }], 'the retry was written');
    assert.deepEqual(await sideRows(side), [], "the handler's writes rolled back");
    assert.deepEqual(await followUps(table, 'tc.followup'), []);
  });

  // A failed run held for its retry write, its consume middleware stuck after next(): what closes
  // its transaction. Without renewal, the lease's end, well before the server's own idle bound
  // (1 s + 5 s). With renewal no lock expiry is armed, and the stuck run's slot was freed without
  // aborting it (review finding): the row stayed locked, and its connection held, for good; now it
  // is aborted when freed (3 s after its 500 ms handlerTimeoutMs at queryTimeoutMs 1 s).
  for (const variant of [
    { table: 'tc_held_abort', renewal: false, timeoutMs: 4_000, closes: "at its lease's end" },
    {
      table: 'tc_held_renewed',
      renewal: true,
      timeoutMs: 10_000,
      closes: 'when its stuck run is freed (lease renewal, handlerTimeoutMs)',
    },
  ]) {
    test(`a failed run held for its retry write, its middleware stuck after next(), keeps no lock: closed ${variant.closes}`, async () => {
      const { table } = variant;
      const { stuck, afterNext, stuckAfterNext } = middlewareStuckAfterNext();
      const { outbox } = await migratedOutbox(newOutbox, db.pool, table, {
        middlewares: [stuckAfterNext],
        ...(variant.renewal ? { queryTimeoutMs: 1_000 } : {}),
      });
      outbox.subscribe(
        'tc.work',
        () => {
          throw new Error('fails');
        },
        {
          transactional: true,
          leaseTtlMs: 1_000,
          ...(variant.renewal ? { leaseRenewIntervalMs: 300, handlerTimeoutMs: 500 } : {}),
          retry: new ConstantRetry({ delayMs: 60_000, maxAttempts: 5 }),
          ...FAST_POLL,
        },
      );
      outbox.start();
      await publishCommitted(outbox, db.pool, 'tc.work', [{ n: 1 }]);
      await afterNext.promise;
      assert.equal(await lockableRows(table, 'tc.work'), 0, 'held: the row stays locked while the middleware runs');
      await waitFor(async () => (await lockableRows(table, 'tc.work')) === 1, {
        timeoutMs: variant.timeoutMs,
        what: `the held transaction closed ${variant.closes}`,
      });
      stuck.open();
      await outbox.stop();
    });
  }

  test('a handler that ended the transaction itself and threw: the savepoint is gone, the retry is written through the pool', async () => {
    const table = 'tc_self_ended';
    const side = await sideTable('tc_self_ended_side');
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table);
    outbox.subscribe(
      'tc.work',
      async (message, ctx) => {
        if (message.attemptsCount > 0) return;
        await ctx.client.query(`INSERT INTO ${side} (message_id, delivery, holder) VALUES ($1, 1, 'self')`, [message.id]);
        await ctx.client.query('COMMIT');
        throw new Error('after its own COMMIT');
      },
      { transactional: true, ...QUICK_RETRY, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'tc.work', [{ n: 1 }]);
    await log.waitFor('acked');
    assert.deepEqual(
      log.of('nacked_retried').map((event) => event.exceptionType),
      ['Error'],
    );
    // Its own COMMIT made its write stick (the documented misuse); the retry was still recorded.
    assert.equal((await sideRows(side)).length, 1);
  });

  test('reject() rolls the writes back and ends the row (DLQ)', async () => {
    const table = 'tc_reject';
    const side = await sideTable('tc_reject_side');
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table);
    outbox.subscribe(
      'tc.work',
      async (message, ctx) => {
        await writeEffects(side, 'any', message, ctx);
        ctx.reject('not for us');
      },
      { transactional: true, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'tc.work', [{ n: 1 }]);
    await log.waitFor('dlq_written');
    assert.deepEqual(await sideRows(side), []);
    assert.deepEqual(await followUps(table, 'tc.followup'), []);
    assert.equal(await remaining(db.pool, 'tc.work', table), 0);
  });

  test('a handler that leaves the transaction failed (a caught statement error) is retried, nothing committed', async () => {
    const table = 'tc_failed_tx';
    const side = await sideTable('tc_failed_tx_side');
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table);
    outbox.subscribe(
      'tc.work',
      async (message, ctx) => {
        await writeEffects(side, 'any', message, ctx);
        if (message.attemptsCount === 0) await ctx.client.query('SELECT 1/0').catch(() => undefined);
      },
      { transactional: true, ...QUICK_RETRY, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'tc.work', [{ n: 1 }]);
    await log.waitFor('acked');
    const [retried] = log.of('nacked_retried');
    // Seen by the client's transaction status when its ReadyForQuery came in before the ack, else by
    // the ack's DELETE failing in the aborted transaction: either way a failure, nothing committed.
    assert.ok(['NotInTransactionError', 'DatabaseError'].includes(retried?.exceptionType ?? ''), retried?.exceptionType);
    assert.deepEqual(
      (await sideRows(side)).map((r) => r.delivery),
      [2],
    );
  });

  test('ordering keys: a transactional ack frees the key at once (the next row does not wait for a poll)', async () => {
    const table = 'tc_keys';
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table);
    const order: number[] = [];
    outbox.subscribe(
      'tc.keyed',
      async (message, ctx) => {
        order.push((message.body as { n: number }).n);
        await ctx.client.query('SELECT 1');
      },
      // Polls 30 s apart: only the key's wake-up after the ack can bring the second row within the wait.
      { transactional: true, concurrency: 4, minPollIntervalMs: 30_000, maxPollIntervalMs: 30_000, leaseTtlMs: 120_000 },
    );
    outbox.start();
    await inTransaction(db.pool, async (client) => {
      await outbox.publish(client, 'tc.keyed', { n: 1 }, { orderingKey: 'k' });
      await outbox.publish(client, 'tc.keyed', { n: 2 }, { orderingKey: 'k' });
    });
    await log.waitFor('acked', 2);
    assert.deepEqual(order, [1, 2]);
  });

  test('without transactional: ctx.client throws NotInTransactionError, ctx.publish commits on its own with the cause', async () => {
    const table = 'tc_plain';
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table);
    let clientError: unknown;
    outbox.subscribe(
      'tc.work',
      async (message, ctx) => {
        try {
          await ctx.client.query('SELECT 1');
        } catch (error) {
          clientError = error;
        }
        await ctx.publish('tc.followup', { cause: message.id }, { headers: { extra: 'x' } });
        assert.deepEqual(ctx.causedBy(), {
          correlationId: message.correlationId,
          headers: { [CAUSATION_ID_HEADER]: message.id },
        });
      },
      FAST_POLL,
    );
    outbox.start();
    const [id] = await publishCommitted(outbox, db.pool, 'tc.work', [{ n: 1 }]);
    await log.waitFor('acked');
    assert.ok(clientError instanceof NotInTransactionError);
    const [followUp] = await followUps(table, 'tc.followup');
    assert.equal(followUp?.headers[CAUSATION_ID_HEADER], id);
    assert.equal(followUp?.headers.extra, 'x');
  });

  test('bad option values throw InvalidOptionError naming transactional; a pool too small for it is warned about', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'tc_options');
    for (const value of ['yes', 1, {}]) {
      assert.throws(
        () => outbox.subscribe('tc.x', () => undefined, { transactional: value as unknown as boolean }),
        (error: unknown) => error instanceof InvalidOptionError && error.option === 'transactional',
      );
    }
    for (const [isolationLevel, transactional] of [
      ['snapshot', true],
      ['READ COMMITTED', true],
      ['serializable', false],
    ] as const) {
      assert.throws(
        () => outbox.subscribe('tc.x', () => undefined, { transactional, isolationLevel: isolationLevel as 'serializable' }),
        (error: unknown) =>
          error instanceof InvalidOptionError &&
          error.option === 'isolationLevel' &&
          error.message.includes(transactional ? "'repeatable read'" : 'transactional: true'),
      );
    }
    const smallPool = new pg.Pool({ connectionString: db.url, max: 3 });
    db.onCleanup(() => smallPool.end());
    const small = newOutbox({ pool: smallPool, table: 'tc_options' });
    small.subscribe('tc.y', () => undefined, { transactional: true, concurrency: 1, name: 'fits' });
    small.subscribe('tc.z', () => undefined, { transactional: true, concurrency: 4, name: 'too-many' });
    small.subscribe('tc.w', () => undefined, { transactional: true, concurrency: 1, name: 'too-many-together' });
    small.subscribe('tc.v', () => undefined, { concurrency: 8, name: 'plain' });
    const warnings = newOutbox.logger.messages('warn').filter((m) => m.includes('transactional subscription'));
    assert.equal(warnings.length, 2);
    assert.match(warnings[0]!, /concurrency 4 on a pool of 3 connections.*at least 7/);
    assert.match(warnings[1]!, /concurrency 1 on a pool of 3 connections.*and 5 for the Outbox's other.*at least 8/);
  });
  test('ctx.publish continues the trace: the follow-up carries the process span’s trace, its publish span is a child', async () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const table = 'tc_trace';
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table, {
      middlewares: [tracingMiddleware({ tracerProvider: provider })],
    });
    outbox.subscribe(
      'tc.work',
      async (_message, ctx) => {
        await ctx.publish('tc.followup', { next: true });
      },
      { transactional: true, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'tc.work', [{ n: 1 }]);
    await log.waitFor('acked');
    const spans = exporter.getFinishedSpans();
    const processSpan = spans.find((s) => s.name === 'process tc.work');
    const followUpSpan = spans.find((s) => s.name === 'publish tc.followup');
    assert.ok(processSpan !== undefined && followUpSpan !== undefined, spans.map((s) => s.name).join(', '));
    assert.equal(followUpSpan.parentSpanContext?.spanId, processSpan.spanContext().spanId);
    const [row] = await followUps(table, 'tc.followup');
    const [, traceId, parentId] = (row?.headers.traceparent ?? '').split('-');
    assert.equal(traceId, processSpan.spanContext().traceId, 'the follow-up continues the consumed message’s trace');
    assert.equal(parentId, followUpSpan.spanContext().spanId);
  });

  test('stop() does not wait on a wedged transactional handler: its connection is closed, nothing of it commits', async () => {
    const table = 'tc_wedged';
    const side = await sideTable('tc_wedged_side');
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table, { gracefulTimeoutMs: 300 });
    const wrote = gate();
    const never = gate();
    let pid: number | undefined;
    outbox.subscribe(
      'tc.work',
      async (message, ctx) => {
        await writeEffects(side, 'wedged', message, ctx);
        pid = (await ctx.client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
        wrote.open();
        await never.promise; // ignores ctx.signal
      },
      { transactional: true, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'tc.work', [{ n: 1 }]);
    await wrote.promise;
    await outbox.stop();
    assert.equal(log.of('drain_timeout').length, 1);
    // The abort closed the delivery's connection: the server rolled the transaction back.
    await waitFor(async () => (await db.pool.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rows.length === 0, {
      what: 'the wedged transaction’s backend is gone',
    });
    never.open();
    assert.deepEqual(await sideRows(side), []);
    assert.deepEqual(await followUps(table, 'tc.followup'), []);
    assert.equal(await remaining(db.pool, 'tc.work', table), 1, 'the row keeps its lease, for redelivery after expiry');
  });

  test('repeatable read with lease renewal: a failed run that outlived its lease keeps its row until its retry, written through the pool, lands', async () => {
    // Review finding: under repeatable read (not holdable) the run rolled back and then wrote its
    // retry through the pool; with its lease as old as the run, another consumer's claim took the
    // row in between, and the retry found it gone (lease_lost: the attempt and its backoff lost).
    // The retry write is held 300 ms here; a competitor polls the table meanwhile.
    const table = 'tc_rr_retry_gap';
    const pool = new ClaimDelayPool(
      { connectionString: db.url, max: 6 },
      () => new Promise((resolve) => setTimeout(resolve, 300)),
      undefined,
      /^txoutbox_retry_/,
    );
    db.onCleanup(() => pool.end());
    const { outbox, log } = await migratedOutbox(newOutbox, pool, table);
    const running = gate();
    outbox.subscribe(
      'tc.rr',
      async () => {
        running.open();
        await new Promise((resolve) => setTimeout(resolve, 900));
        throw new Error('fails slowly');
      },
      {
        transactional: true,
        isolationLevel: 'repeatable read',
        leaseTtlMs: 500,
        leaseRenewIntervalMs: 200,
        retry: new ConstantRetry({ delayMs: 60_000, maxAttempts: 5 }),
        ...FAST_POLL,
      },
    );
    const competitor = newOutbox({ pool: db.pool, table });
    const taken: number[] = [];
    competitor.subscribe(
      'tc.rr',
      (message) => {
        taken.push(message.deliveriesCount);
      },
      // The same lease: a claim judges a lease expired by its own leaseTtlMs.
      { leaseTtlMs: 500, ...FAST_POLL },
    );
    const [id] = await publishCommitted(outbox, db.pool, 'tc.rr', [{ n: 1 }]);
    outbox.start();
    // Only once the row is running here: the competitor's claims then meet it locked, and after.
    await running.promise;
    competitor.start();
    const attempts = async (): Promise<{ attempts_count: number; last_exception: string | null } | undefined> =>
      (
        await db.pool.query<{ attempts_count: number; last_exception: string | null }>(
          `SELECT attempts_count, last_exception FROM ${table} WHERE id = $1`,
          [id],
        )
      ).rows[0];
    await waitFor(async () => (await attempts())?.attempts_count === 1, { timeoutMs: 10_000, what: 'the retry written' });
    assert.match((await attempts())?.last_exception ?? '', /fails slowly/);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(taken, [], 'no other consumer took the row before its retry landed');
    assert.equal(log.of('lease_lost').length, 0);
    await competitor.stop();
    await outbox.stop();
  });

  test('repeatable read with lease renewal: renewals leave the locked row alone and the ack in the snapshot commits', async () => {
    // Reproduction (before the row lock): a renewal updated the row after the handler's snapshot,
    // and the in-transaction ack DELETE failed with 40001, so every run longer than the renewal
    // interval was retried (seen as nacked_retried here) and ended in the DLQ after its attempts.
    const table = 'tc_rr_renew';
    const side = await sideTable('tc_rr_renew_side');
    let heldSince: string | undefined;
    let renewalsWhileHeld = 0;
    const renewed = gate();
    // The renewals are the buffered row's: the running one is locked and left out.
    const pool = new ClaimDelayPool(
      { connectionString: db.url, max: 6 },
      () => Promise.resolve(),
      () => {
        if (heldSince !== undefined && ++renewalsWhileHeld === 3) renewed.open();
        return Promise.resolve();
      },
      /^txoutbox_renew_/,
    );
    db.onCleanup(() => pool.end());
    const { outbox, log } = await migratedOutbox(newOutbox, pool, table);
    outbox.subscribe(
      'tc.work',
      async (message: Message<{ n: number }>, ctx) => {
        await writeEffects(side, 'rr', message, ctx);
        if (message.body.n !== 1) return;
        heldSince = (
          await db.pool.query<{ at: string }>(`SELECT acquired_at::text AS at FROM ${table} WHERE id = $1`, [message.id])
        ).rows[0]?.at;
        await renewed.promise;
      },
      {
        transactional: true,
        isolationLevel: 'repeatable read',
        concurrency: 1,
        fetchBatchSize: 2,
        leaseTtlMs: 5_000,
        leaseRenewIntervalMs: 20,
        ...QUICK_RETRY,
        ...FAST_POLL,
      },
    );
    outbox.start();
    const [first] = await publishCommitted(outbox, db.pool, 'tc.work', [{ n: 1 }, { n: 2 }]);
    await log.waitFor('acked', 2);
    assert.deepEqual(log.of('nacked_retried'), [], 'no run failed');
    assert.deepEqual(
      (await sideRows(side)).map((row) => row.delivery),
      [1, 1],
      'each row ran once, and its writes committed',
    );
    assert.ok(heldSince !== undefined);
    assert.equal(renewalsWhileHeld >= 3, true);
    assert.equal(await remaining(db.pool, 'tc.work', table), 0, `${first} and its neighbour acked`);
  });

  test('the row lock is the lease: a competitor’s claim passes the row by however old its lease, until the transaction ends', async () => {
    const table = 'tc_lock_lease';
    const side = await sideTable('tc_lock_lease_side');
    const otherPool = new pg.Pool({ connectionString: db.url, max: 4 });
    db.onCleanup(() => otherPool.end());
    const holder = await migratedOutbox(newOutbox, db.pool, table);
    const competitor = await migratedOutbox(newOutbox, otherPool, table);
    const wrote = gate();
    const go = gate();
    holder.outbox.subscribe(
      'tc.work',
      async (message, ctx) => {
        await writeEffects(side, 'holder', message, ctx);
        wrote.open();
        await go.promise;
      },
      { transactional: true, leaseTtlMs: 60_000, leaseRenewIntervalMs: 10_000, ...FAST_POLL },
    );
    holder.outbox.start();
    await publishCommitted(holder.outbox, db.pool, 'tc.work', [{ n: 1 }]);
    await wrote.promise;
    // To this competitor every lease older than 1 ms has expired: only the lock keeps the row.
    competitor.outbox.subscribe('tc.work', (message) => assert.fail(`the competitor ran ${message.id}`), {
      leaseTtlMs: 1,
      ...FAST_POLL,
    });
    competitor.outbox.start();
    await competitor.log.waitFor('fetched', 5);
    assert.equal(
      competitor.log.of('fetched').reduce((sum, event) => sum + event.count, 0),
      0,
      'every competing claim passed the locked row by',
    );
    go.open();
    await holder.log.waitFor('acked');
    assert.deepEqual(
      (await sideRows(side)).map((row) => row.holder),
      ['holder'],
    );
    assert.equal(await remaining(db.pool, 'tc.work', table), 0);
  });

  test('a handler that outlives its lease with the row locked is aborted and ends as lease_lost: no DLQ row, the redelivery acks', async () => {
    const table = 'tc_lock_expiry';
    const side = await sideTable('tc_lock_expiry_side');
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table);
    const expiryWarnings = (): number =>
      newOutbox.logger.messages('warn').filter((m) => m.includes('outlived its lease with its row locked')).length;
    const warnedBefore = expiryWarnings();
    let reason: unknown;
    outbox.subscribe(
      'tc.work',
      async (message, ctx) => {
        await writeEffects(side, `run ${message.deliveriesCount}`, message, ctx);
        if (message.deliveriesCount > 1) return;
        // Runs past leaseTtlMs, then returns as if it succeeded (under reject_on_error, a failure
        // would end the row in the DLQ): its lease's end must not count as the message's failure.
        await new Promise((resolve) => {
          ctx.signal.addEventListener('abort', resolve, { once: true });
        });
        reason = ctx.signal.reason;
      },
      { transactional: true, leaseTtlMs: 300, ackPolicy: 'reject_on_error', ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'tc.work', [{ n: 1 }]);
    const [lost] = await log.waitFor('lease_lost');
    assert.equal(lost?.deliveriesCount, 1);
    assert.ok(reason instanceof LeaseLostError, 'ctx.signal says why');
    await log.waitFor('acked');
    assert.deepEqual(
      (await sideRows(side)).map((row) => row.holder),
      ['run 2'],
      'the aborted run wrote nothing',
    );
    assert.deepEqual(log.of('dlq_written'), []);
    assert.deepEqual(log.of('nacked_terminal'), []);
    assert.equal(expiryWarnings() - warnedBefore, 1);
  });

  test('the lease runs out during the ack: lease_lost, never the DLQ for a handler that succeeded; the redelivery acks', async () => {
    // The ack's DELETE outlasts the lease (a trigger sleeps in it, once): the lease timer closes the
    // connection, the server rolls the transaction back, the row keeps this run's expired token.
    // The commit's failure was taken for the delivery's: under reject_on_error, into the DLQ.
    const table = 'tc_ack_expiry';
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table);
    await db.pool.query(`CREATE SEQUENCE ${table}_once;
      CREATE FUNCTION ${table}_slow() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF nextval('${table}_once') = 1 THEN PERFORM pg_sleep(1.2); END IF; RETURN OLD; END $$;
      CREATE TRIGGER ${table}_slow BEFORE DELETE ON ${table} FOR EACH ROW EXECUTE FUNCTION ${table}_slow();`);
    const runs: number[] = [];
    outbox.subscribe(
      'tc.ack',
      (message) => {
        runs.push(message.deliveriesCount);
      },
      { transactional: true, leaseTtlMs: 400, ackPolicy: 'reject_on_error', ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'tc.ack', [{ n: 1 }]);
    await log.waitFor('lease_lost');
    await log.waitFor('acked');
    // Run again after the lease (at least once; a loaded machine may lose one more lease first).
    assert.ok(runs.length >= 2 && runs[0] === 1, `runs ${runs.join(', ')}`);
    assert.deepEqual(log.of('dlq_written'), [], 'a handler that succeeded never reaches the DLQ');
    assert.deepEqual(log.of('nacked_terminal'), []);
    assert.equal(await remaining(db.pool, 'tc.ack', table), 0);
  });

  test('a buffered row re-leased before its start: the lock finds it gone, the handler does not run, lease_lost', async () => {
    const table = 'tc_lost_before_start';
    const side = await sideTable('tc_lost_before_start_side');
    const errors: unknown[] = [];
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table, {
      middlewares: [
        {
          name: 'errors',
          async consume(_ctx, next) {
            const result = await next();
            if (result.error !== undefined) errors.push(result.error);
          },
        },
      ],
    });
    const first = gate();
    const go = gate();
    const ran: number[] = [];
    outbox.subscribe(
      'tc.work',
      async (message: Message<{ n: number }>, ctx) => {
        ran.push(message.body.n);
        await writeEffects(side, 'holder', message, ctx);
        if (message.body.n !== 1) return;
        first.open();
        await go.promise;
      },
      { transactional: true, concurrency: 1, fetchBatchSize: 2, ...FAST_POLL },
    );
    outbox.start();
    const [, second] = await publishCommitted(outbox, db.pool, 'tc.work', [{ n: 1 }, { n: 2 }]);
    await first.promise;
    // The buffered row's lease goes to another holder (as after an expiry elsewhere): a new token.
    await db.pool.query(`UPDATE ${table} SET acquired_token = gen_random_uuid(), acquired_at = now() WHERE id = $1`, [second]);
    go.open();
    const [lost] = await log.waitFor('lease_lost');
    assert.equal(lost?.messageId, second);
    await log.waitFor('acked');
    assert.deepEqual(ran, [1], 'the re-leased row’s handler never ran here');
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof LeaseLostError && errors[0].messageId === second, 'middlewares see why the run failed');
    assert.deepEqual(log.of('nacked_retried'), [], 'and nothing was written for it');
    assert.equal(await remaining(db.pool, 'tc.work', table), 1, 'the other holder’s row stays');
  });

  test('Drizzle over ctx.client joins the transaction: a throw rolls its insert back, the retry commits it once', async () => {
    const table = 'tc_drizzle';
    await sideTable('tc_drizzle_side');
    const sideRowsTable = pgTable('tc_drizzle_side', {
      messageId: text('message_id').notNull(),
      delivery: integer('delivery').notNull(),
      holder: text('holder').notNull(),
    });
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table);
    outbox.subscribe(
      'tc.work',
      async (message, ctx) => {
        const orm = drizzle({ client: ctx.client });
        await orm.insert(sideRowsTable).values({ messageId: message.id, delivery: message.deliveriesCount, holder: 'drizzle' });
        await ctx.publish('tc.followup', { cause: message.id });
        if (message.attemptsCount === 0) throw new Error('after the writes');
      },
      { transactional: true, ...QUICK_RETRY, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'tc.work', [{ n: 1 }]);
    await log.waitFor('acked');
    assert.deepEqual(
      (await sideRows('tc_drizzle_side')).map((r) => [r.delivery, r.holder]),
      [[2, 'drizzle']],
    );
    assert.equal((await followUps(table, 'tc.followup')).length, 1);
  });

  test('Kysely through a one-client dialect over ctx.client joins the transaction', async () => {
    const table = 'tc_kysely';
    await sideTable('tc_kysely_side');
    interface Database {
      tc_kysely_side: { message_id: string; delivery: number; holder: string };
    }
    /** A pool of one: ctx.client, never released by Kysely (txoutbox ends the transaction and releases it). */
    const onto = (client: pg.PoolClient): PostgresPool => {
      const only = { query: client.query.bind(client), release: () => undefined } as unknown as PostgresPoolClient;
      return { connect: () => Promise.resolve(only), end: () => Promise.resolve(), options: {} };
    };
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table);
    outbox.subscribe(
      'tc.work',
      async (message, ctx) => {
        const k = new Kysely<Database>({ dialect: new PostgresDialect({ pool: onto(ctx.client) }) });
        await k
          .insertInto('tc_kysely_side')
          .values({ message_id: message.id, delivery: message.deliveriesCount, holder: 'kysely' })
          .execute();
        if (message.attemptsCount === 0) throw new Error('after the writes');
      },
      { transactional: true, ...QUICK_RETRY, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'tc.work', [{ n: 1 }]);
    await log.waitFor('acked');
    assert.deepEqual(
      (await sideRows('tc_kysely_side')).map((r) => [r.delivery, r.holder]),
      [[2, 'kysely']],
    );
  });
  test('Knex joins per query with .connection(ctx.client)', async () => {
    const table = 'tc_knex';
    await sideTable('tc_knex_side');
    // No connection settings: every query names its connection, so Knex never opens a pool.
    const k = knex({ client: 'pg' });
    db.onCleanup(() => k.destroy());
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table);
    outbox.subscribe(
      'tc.work',
      async (message, ctx) => {
        await k('tc_knex_side')
          .insert({ message_id: message.id, delivery: message.deliveriesCount, holder: 'knex' })
          .connection(ctx.client);
        if (message.attemptsCount === 0) throw new Error('after the writes');
      },
      { transactional: true, ...QUICK_RETRY, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'tc.work', [{ n: 1 }]);
    await log.waitFor('acked');
    assert.deepEqual(
      (await sideRows('tc_knex_side')).map((r) => [r.delivery, r.holder]),
      [[2, 'knex']],
    );
  });
});
