import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';

import { ConstantRetry, type Handler, NoRetry, type SubscribeOptions } from '../../src/index.js';
import { ClaimDelayPool } from '../support/claim-delay-pool.js';
import { useTestDatabase } from '../support/database.js';
import type { EventLog } from '../support/events.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { waitFor } from '../support/wait-for.js';

/**
 * A transactional delivery's own statements (its checkout, BEGIN, the row's lock, the ack and
 * COMMIT) failing for the database's reasons, not the message's: the row is retried, never ended,
 * whatever the ack policy (architecture/transactional-consume.md, "When txoutbox's own statements
 * fail"), and a handler's own statements on ctx.client failing so. Every failure here is real: a
 * backend terminated by an administrator, a serialization failure, node-postgres' own socket
 * destroyed; what is injected is when a statement is sent (ClaimDelayPool) and where.
 */
const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

/** reject_on_error: a handler's throw goes straight to the DLQ; the strategy's 10 ms is for what is retried. */
const REJECTING: SubscribeOptions = {
  transactional: true,
  ackPolicy: 'reject_on_error',
  retry: new ConstantRetry({ delayMs: 10, maxAttempts: 5 }),
  ...FAST_POLL,
};

async function dlqReasons(table: string): Promise<string[]> {
  const { rows } = await db.pool.query<{ failure_reason: string }>(`SELECT failure_reason FROM ${table}_dlq`);
  return rows.map((row) => row.failure_reason);
}

/**
 * Where the backend to terminate is: a COMMIT sleeping in the deferred trigger, or a delivery's
 * transaction idle after its BEGIN. By state, not by the last statement alone: an idle pool
 * connection's last statement may be a COMMIT too (a migration's, a publish's).
 */
const AT_COMMIT = `state = 'active' AND wait_event = 'PgSleep' AND query LIKE 'COMMIT%'`;
const AFTER_BEGIN = `state = 'idle in transaction' AND query LIKE 'BEGIN%'`;
/** A handler's own statement, sleeping. */
const IN_PG_SLEEP = `state = 'active' AND wait_event = 'PgSleep' AND query LIKE 'SELECT pg_sleep%'`;

/** Terminates the one backend `where` finds, once there is one. */
async function terminateBackend(where: string): Promise<void> {
  await waitFor(
    async () => {
      const { rows } = await db.pool.query<{ ended: boolean }>(
        `SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity
         WHERE pid <> pg_backend_pid() AND datname = current_database() AND ${where}`,
      );
      assert.ok(rows.length <= 1, `one backend at a time: ${where}`);
      return rows.some((row) => row.ended);
    },
    { what: `a backend where ${where}` },
  );
}

/**
 * A side table whose rows are checked at COMMIT by a deferred trigger: a row with `slow` sleeps
 * there (a COMMIT that takes a while), one with `bad` fails it with a check violation (what the
 * handler wrote is wrong: the message's failure), one with `conflict` with a serialization failure
 * every time (a fault that never goes away).
 */
async function deferredSide(name: string): Promise<string> {
  await db.pool.query(`
    CREATE TABLE ${name} (
      message_id text NOT NULL, delivery int NOT NULL,
      slow boolean NOT NULL DEFAULT false, bad boolean NOT NULL DEFAULT false, conflict boolean NOT NULL DEFAULT false
    );
    CREATE FUNCTION ${name}_check() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.slow THEN PERFORM pg_sleep(30); END IF;
      IF NEW.bad THEN RAISE EXCEPTION 'bad side row' USING ERRCODE = 'check_violation'; END IF;
      IF NEW.conflict THEN RAISE EXCEPTION 'never serializable' USING ERRCODE = 'serialization_failure'; END IF;
      RETURN NULL;
    END $$;
    CREATE CONSTRAINT TRIGGER ${name}_at_commit AFTER INSERT ON ${name}
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${name}_check();
  `);
  return name;
}

/** A statement that fails with `condition` (a PL/pgSQL condition name), as the server answers it. */
function raising(condition: string): string {
  return `DO $$ BEGIN RAISE EXCEPTION 'raised: ${condition}' USING ERRCODE = '${condition}'; END $$`;
}

/** A handler writing one row per run to `side` through ctx.client: with `flag`, on its first run only for `slow`, on every run otherwise. */
function writeSide(side: string, flag: 'slow' | 'bad' | 'conflict'): Handler {
  return async (message, ctx) => {
    await ctx.client.query(`INSERT INTO ${side} (message_id, delivery, ${flag}) VALUES ($1, $2, $3)`, [
      message.id,
      message.deliveriesCount,
      flag !== 'slow' || message.deliveriesCount === 1,
    ]);
  };
}

async function sideDeliveries(table: string): Promise<number[]> {
  const { rows } = await db.pool.query<{ delivery: number }>(`SELECT delivery FROM ${table} ORDER BY delivery`);
  return rows.map((row) => row.delivery);
}

async function outboxOn(table: string) {
  return migratedOutbox(newOutbox, db.pool, table);
}

/**
 * One message through `handler` on a subscription of its own: `meanwhile` (a fault from outside)
 * runs once it is published. Resolves, with the event log, once it was acked or moved to the DLQ,
 * and asserts it was not moved there.
 */
async function retriedNotRejected(
  table: string,
  handler: Handler,
  options: SubscribeOptions = REJECTING,
  meanwhile: () => Promise<void> = () => Promise.resolve(),
): Promise<EventLog> {
  const { outbox, log } = await outboxOn(table);
  outbox.subscribe('tci.work', handler, options);
  outbox.start();
  await publishCommitted(outbox, db.pool, 'tci.work', [{ n: 1 }]);
  await meanwhile();
  await waitFor(() => log.of('acked').length + log.of('dlq_written').length > 0, { what: 'an ack or a DLQ move' });
  assert.deepEqual(await dlqReasons(table), []);
  return log;
}

describe("transactional consume: txoutbox's own statements failing", () => {
  test('the backend terminated at COMMIT after the handler succeeded: retried under reject_on_error, never the DLQ', async () => {
    const table = 'tci_commit';
    const side = await deferredSide('tci_commit_side');
    // The first run's COMMIT sleeps in the deferred trigger: the administrator ends its backend there.
    const log = await retriedNotRejected(table, writeSide(side, 'slow'), REJECTING, () => terminateBackend(AT_COMMIT));
    assert.deepEqual(await sideDeliveries(side), [2]);
    assert.equal(await remaining(db.pool, 'tci.work', table), 0);
    const [retried] = log.of('nacked_retried');
    assert.equal(retried?.exceptionType, 'DatabaseError');
  });

  test('a serialization failure of the ack: retried under reject_on_error, the retry commits', async () => {
    const table = 'tci_serial';
    await db.pool.query('CREATE TABLE tci_serial_side (k int NOT NULL, delivery int NOT NULL)');
    const { outbox, log } = await outboxOn(table);
    const other = new pg.Client({ connectionString: db.url });
    await other.connect();
    try {
      outbox.subscribe(
        'tci.work',
        async (message, ctx) => {
          // Write skew: this run reads k = 1 and writes k = 2; the other transaction reads k = 2,
          // writes k = 1 and commits first. One of the two cannot commit: this one.
          await ctx.client.query('SELECT count(*) FROM tci_serial_side WHERE k = 1');
          await ctx.client.query('INSERT INTO tci_serial_side (k, delivery) VALUES (2, $1)', [message.deliveriesCount]);
          if (message.deliveriesCount === 1) {
            await other.query('BEGIN ISOLATION LEVEL SERIALIZABLE');
            await other.query('SELECT count(*) FROM tci_serial_side WHERE k = 2');
            await other.query('INSERT INTO tci_serial_side (k, delivery) VALUES (1, 0)');
            await other.query('COMMIT');
          }
        },
        { ...REJECTING, isolationLevel: 'serializable' },
      );
      outbox.start();
      await publishCommitted(outbox, db.pool, 'tci.work', [{ n: 1 }]);
      await waitFor(() => log.of('acked').length + log.of('dlq_written').length > 0, { what: 'an ack or a DLQ move' });
      assert.deepEqual(await dlqReasons(table), []);
      const { rows } = await db.pool.query<{ k: number; delivery: number }>('SELECT k, delivery FROM tci_serial_side ORDER BY k');
      assert.deepEqual(rows, [
        { k: 1, delivery: 0 },
        { k: 2, delivery: 2 },
      ]);
      const [retried] = log.of('nacked_retried');
      assert.equal(retried?.exceptionType, 'DatabaseError');
    } finally {
      await other.end();
    }
  });

  test('the backend terminated before the row lock: the handler never ran, retried under reject_on_error', async () => {
    const table = 'tci_begin';
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let holding = false;
    // Holds the first delivery's row lock and savepoint (one round trip) before it is sent; its
    // BEGIN has run, so its backend sits idle in the transaction, where the test terminates it.
    const pool = new ClaimDelayPool(
      { connectionString: db.url, max: 4 },
      () => {
        if (holding) return Promise.resolve();
        holding = true;
        return held;
      },
      undefined,
      /tc_savepoint/,
    );
    const runs: number[] = [];
    const { outbox, log } = await migratedOutbox(newOutbox, pool, table);
    try {
      outbox.subscribe(
        'tci.work',
        (message) => {
          runs.push(message.deliveriesCount);
        },
        // No retries: what is retried waits as long as a crashed process's row would, its lease.
        { ...REJECTING, retry: new NoRetry(), leaseTtlMs: 1_500 },
      );
      outbox.start();
      await publishCommitted(outbox, db.pool, 'tci.work', [{ n: 1 }]);
      await waitFor(() => holding, { what: 'the first delivery held before its row lock' });
      await terminateBackend(AFTER_BEGIN);
      release();
      await waitFor(() => log.of('acked').length + log.of('dlq_written').length > 0, { what: 'an ack or a DLQ move' });
      assert.deepEqual(await dlqReasons(table), []);
      assert.deepEqual(runs, [2]);
      assert.equal(await remaining(db.pool, 'tci.work', table), 0);
      await outbox.stop();
    } finally {
      release();
      await pool.end();
    }
  });

  test('what the handler wrote fails the COMMIT (a deferred check): the message’s failure, into the DLQ as rejected', async () => {
    const table = 'tci_bad';
    const side = await deferredSide('tci_bad_side');
    const { outbox, log } = await outboxOn(table);
    outbox.subscribe('tci.work', writeSide(side, 'bad'), REJECTING);
    outbox.start();
    await publishCommitted(outbox, db.pool, 'tci.work', [{ n: 1 }]);
    await log.waitFor('dlq_written');
    assert.deepEqual(await dlqReasons(table), ['rejected']);
    assert.deepEqual(await sideDeliveries(side), []);
  });

  test('a run closed by its handler timeout after ctx.ack(): the timeout is the failure, decided by the ack policy', async () => {
    const table = 'tci_timeout';
    const { outbox, log } = await outboxOn(table);
    outbox.subscribe(
      'tci.work',
      async (_message, ctx) => {
        ctx.ack();
        // Past handlerTimeoutMs: the delivery's connection is closed, and the ack finds it so.
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      },
      { ...REJECTING, handlerTimeoutMs: 200 },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'tci.work', [{ n: 1 }]);
    await log.waitFor('dlq_written');
    assert.deepEqual(await dlqReasons(table), ['rejected']);
    assert.equal(log.of('nacked_retried').length, 0);
  });

  test("the handler's own statement meets a terminated backend: retried under reject_on_error, not the handler's failure", async () => {
    const runs: number[] = [];
    await retriedNotRejected(
      'tci_handler_kill',
      async (message, ctx) => {
        runs.push(message.deliveriesCount);
        if (message.deliveriesCount === 1) await ctx.client.query('SELECT pg_sleep(30)');
      },
      REJECTING,
      () => terminateBackend(IN_PG_SLEEP),
    );
    assert.deepEqual(runs, [1, 2]);
  });

  test("the handler's own statement fails with a serialization failure: retried under reject_on_error", async () => {
    const log = await retriedNotRejected('tci_handler_serial', async (message, ctx) => {
      if (message.deliveriesCount === 1) await ctx.client.query(raising('serialization_failure'));
    });
    assert.equal(log.of('nacked_retried').length, 1);
  });

  test("the handler's connection cut under its statement (no SQLSTATE): retried under reject_on_error", async () => {
    const log = await retriedNotRejected('tci_handler_cut', async (message, ctx) => {
      if (message.deliveriesCount > 1) return;
      const running = ctx.client.query('SELECT pg_sleep(5)');
      // The link goes (node-postgres' own socket, as a network cut would close it).
      (ctx.client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
      await running;
    });
    assert.equal(log.of('nacked_retried').length, 1);
  });

  test('ctx.ack() and then a serialization failure thrown: the ack cannot stand, retried under reject_on_error', async () => {
    const log = await retriedNotRejected('tci_ack_then', async (message, ctx) => {
      ctx.ack();
      if (message.deliveriesCount === 1) await ctx.client.query(raising('serialization_failure'));
    });
    assert.equal(log.of('nacked_retried').length, 1);
  });

  test("what the handler's own statement did wrong, another connection's failure, or a decision of its own stays the handler's", async () => {
    const table = 'tci_handler_own';
    const { outbox, log } = await outboxOn(table);
    const other = new pg.Client({ connectionString: db.url });
    await other.connect();
    other.on('error', () => undefined);
    try {
      outbox.subscribe(
        'tci.work',
        async (message, ctx) => {
          const { kind } = message.body as { kind: string };
          // A check violation: what it wrote is wrong.
          if (kind === 'bad') await ctx.client.query(raising('check_violation'));
          // A statement sent with one parameter too few: a protocol violation (08P01), its bug.
          if (kind === 'params') await ctx.client.query('SELECT $1::int + $2::int', [1]);
          // A backend of its own, not ctx.client's, terminated (by the test) under its statement.
          if (kind === 'elsewhere') await other.query('SELECT pg_sleep(30)');
          // A serialization failure it chose to reject on.
          try {
            await ctx.client.query(raising('serialization_failure'));
          } catch (error) {
            ctx.reject('gave up');
            throw error;
          }
        },
        REJECTING,
      );
      outbox.start();
      await publishCommitted(outbox, db.pool, 'tci.work', [
        { kind: 'bad' },
        { kind: 'params' },
        { kind: 'elsewhere' },
        { kind: 'decided' },
      ]);
      await terminateBackend(IN_PG_SLEEP);
      await log.waitFor('dlq_written', 4);
      assert.deepEqual(await dlqReasons(table), ['rejected', 'rejected', 'rejected', 'rejected']);
      assert.equal(log.of('nacked_retried').length, 0);
    } finally {
      await other.end().catch(() => undefined);
    }
  });

  test('under nack_on_error the same failures keep the retry strategy’s delay', async () => {
    const table = 'tci_nack';
    const side = await deferredSide('tci_nack_side');
    const log = await retriedNotRejected(
      table,
      writeSide(side, 'slow'),
      { transactional: true, retry: new ConstantRetry({ delayMs: 10, maxAttempts: 5 }), ...FAST_POLL },
      () => terminateBackend(AT_COMMIT),
    );
    assert.deepEqual(await sideDeliveries(side), [2]);
    assert.deepEqual(
      log.of('nacked_retried').map((event) => event.nextDelaySeconds),
      [0.01],
    );
  });

  test('a fault that comes back every time ends by the ack policy once the retries are spent, never in a loop', async () => {
    const table = 'tci_always';
    const side = await deferredSide('tci_always_side');
    const { outbox, log } = await outboxOn(table);
    outbox.subscribe(
      'tci.work',
      writeSide(side, 'conflict'),
      // Ten runs, as many as the default strategy a spent one falls back to allows: after the
      // tenth both are spent, and the ack policy decides.
      { ...REJECTING, retry: new ConstantRetry({ delayMs: 10, maxAttempts: 10 }) },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'tci.work', [{ n: 1 }]);
    await log.waitFor('dlq_written', 1, 30_000);
    assert.deepEqual(await dlqReasons(table), ['rejected']);
    assert.equal(log.of('nacked_retried').length, 9);
    assert.deepEqual(await sideDeliveries(side), []);
  });
});
