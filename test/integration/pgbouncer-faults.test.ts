/**
 * What PgBouncer itself does to a transactional delivery (a real PgBouncer in transaction mode,
 * scripts/ensure-pgbouncer.sh): its admin console's `KILL` drops every client and server connection
 * of a database at once, mid-statement and mid-COMMIT, and answers with errors of its own (SQLSTATE
 * 08P01, the code PostgreSQL keeps for protocol violations). Those are the database's failures, not
 * the message's: under `reject_on_error` the row must be retried, never dead-lettered
 * (architecture/transactional-consume.md, "When txoutbox's own statements fail";
 * architecture/pgbouncer.md, "Under faults"). And a relay's deletes of confirmed rows cut by it in
 * flight: their outcome unknown, the server finishing them after the client was told they failed.
 * The chaos suite's `pgbouncer` scenario runs the same faults under load.
 */
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';

import { ConstantRetry, type Handler, type SubscribeOptions } from '../../src/index.js';
import { webhookSink } from '../../src/relay/index.js';
import { useTestDatabase } from '../support/database.js';
import type { EventLog } from '../support/events.js';
import { outboxFactory } from '../support/outboxes.js';
import { type PgBouncer, startPgBouncer } from '../support/pgbouncer.js';
import { pooledOutbox } from '../support/pooled-outbox.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { waitFor } from '../support/wait-for.js';
import { WebhookReceiver } from '../support/webhook-receiver.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const DATABASE = new URL(db.url).pathname.slice(1);

const REJECTING: SubscribeOptions = {
  transactional: true,
  ackPolicy: 'reject_on_error',
  retry: new ConstantRetry({ delayMs: 10, maxAttempts: 5 }),
  // An outcome write lost around the KILL leaves the row leased: back within the wait below.
  leaseTtlMs: 5_000,
  minPollIntervalMs: 20,
  maxPollIntervalMs: 100,
};

let bouncer: PgBouncer | { skip: string };
before(async () => {
  bouncer = await startPgBouncer({ serverLoginRetrySeconds: 1 });
});
after(async () => {
  if (bouncer !== undefined && !('skip' in bouncer)) await bouncer.close();
});

/** Every connection to the test's database dropped by PgBouncer once a backend matches `where`, then resumed. */
async function killWhen(b: PgBouncer, where: string): Promise<void> {
  await waitFor(
    async () => {
      const { rows } = await db.pool.query(
        `SELECT 1 FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname = current_database() AND ${where}`,
      );
      return rows.length > 0;
    },
    { what: `a backend where ${where}` },
  );
  await b.admin(`KILL ${DATABASE}`);
  // A killed database holds new connections until it is resumed by name.
  await b.admin(`RESUME ${DATABASE}`);
}

/**
 * One message through `handler` on a transactional subscription through PgBouncer, killed by
 * `fault` once published; resolves once it was acked or dead-lettered, asserting it was not
 * dead-lettered, with the handler's runs.
 */
async function throughKill(
  b: PgBouncer,
  table: string,
  handler: Handler,
  fault: () => Promise<void>,
): Promise<{ log: EventLog }> {
  const { outbox, log } = await pooledOutbox(newOutbox, b, db.url, table);
  try {
    outbox.subscribe('pgbk.work', handler, REJECTING);
    outbox.start();
    await publishCommitted(outbox, db.pool, 'pgbk.work', [{ n: 1 }]);
    await fault();
    await waitFor(() => log.of('acked').length + log.of('dlq_written').length > 0, {
      what: 'an ack or a DLQ move',
      timeoutMs: 30_000,
    });
    const { rows } = await db.pool.query<{ failure_reason: string }>(`SELECT failure_reason FROM ${table}_dlq`);
    assert.deepEqual(
      rows.map((row) => row.failure_reason),
      [],
      'PgBouncer dropping the connection is not the message’s failure',
    );
    return { log };
  } finally {
    await outbox.stop();
  }
}

/**
 * The first run's statement on ctx.client cut by a KILL, the handler throwing at once what `thrown`
 * makes of its error: run again, then acked. Its backend, orphaned, holds the row's lock until its
 * sleep ends: the second run waits for it.
 */
async function cutMidStatement(b: PgBouncer, table: string, thrown: (error: Error) => Error): Promise<void> {
  const runs: number[] = [];
  const { log } = await throughKill(
    b,
    table,
    async (message, ctx) => {
      runs.push(message.deliveriesCount);
      if (message.deliveriesCount > 1) return;
      await ctx.client.query('SELECT pg_sleep(3)').catch((error: unknown) => {
        throw thrown(error as Error);
      });
    },
    () => killWhen(b, `state = 'active' AND wait_event = 'PgSleep' AND query LIKE 'SELECT pg_sleep%'`),
  );
  assert.equal(log.of('acked').length, 1);
  assert.deepEqual(runs, [1, 2], 'run again after the KILL');
}

describe('transactional consume behind PgBouncer: KILL of the database', () => {
  test('the handler’s statement on ctx.client cut by the KILL: retried under reject_on_error, then acked', async (t) => {
    if ('skip' in bouncer) {
      t.skip(bouncer.skip);
      return;
    }
    await cutMidStatement(bouncer, 'pgbk_stmt', (error) => error);
  });

  test('a data layer’s error that keeps the cut statement’s error where no cause leads (TypeORM’s driverError): retried too', async (t) => {
    if ('skip' in bouncer) {
      t.skip(bouncer.skip);
      return;
    }
    // What TypeORM's QueryFailedError and Sequelize's DatabaseError do: a new error, the driver's
    // kept in a field of their own.
    await cutMidStatement(bouncer, 'pgbk_wrapped', (error) => Object.assign(new Error('query failed'), { driverError: error }));
  });

  test('the COMMIT cut by the KILL after the handler succeeded: its outcome read back, acked once, never the DLQ', async (t) => {
    if ('skip' in bouncer) {
      t.skip(bouncer.skip);
      return;
    }
    const b = bouncer;
    // A deferred trigger holds the first run's COMMIT open: the KILL finds it there.
    await db.pool.query(`
      CREATE TABLE pgbk_side (message_id text NOT NULL, delivery int NOT NULL, slow boolean NOT NULL);
      CREATE FUNCTION pgbk_side_check() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.slow THEN PERFORM pg_sleep(3); END IF; RETURN NULL; END $$;
      CREATE CONSTRAINT TRIGGER pgbk_side_at_commit AFTER INSERT ON pgbk_side
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pgbk_side_check();
    `);
    const runs: number[] = [];
    const { log } = await throughKill(
      b,
      'pgbk_commit',
      async (message, ctx) => {
        runs.push(message.deliveriesCount);
        await ctx.client.query('INSERT INTO pgbk_side (message_id, delivery, slow) VALUES ($1, $2, $3)', [
          message.id,
          message.deliveriesCount,
          message.deliveriesCount === 1,
        ]);
      },
      () => killWhen(b, `state = 'active' AND wait_event = 'PgSleep' AND query LIKE 'COMMIT%'`),
    );
    // Unlike pg_terminate_backend, PgBouncer only closes the sockets: the server finishes the COMMIT
    // it was running. The delivery, its answer lost, asks whether its transaction committed.
    assert.equal(log.of('acked').length, 1);
    assert.deepEqual(runs, [1], 'not run again: its COMMIT landed');
    const { rows } = await db.pool.query<{ delivery: number }>('SELECT delivery FROM pgbk_side ORDER BY delivery');
    assert.deepEqual(
      rows.map((row) => row.delivery),
      [1],
      'the write committed once, with the ack',
    );
  });
});

describe('a relay behind PgBouncer: KILL of the database mid-ack', () => {
  test('the deletes of confirmed rows cut in flight: every row reaches the broker, the table empties, nothing is dead-lettered', async (t) => {
    if ('skip' in bouncer) {
      t.skip(bouncer.skip);
      return;
    }
    const b = bouncer;
    const receiver = await WebhookReceiver.start();
    t.after(() => receiver.stop());
    // The broker holds its confirms until the rows are locked from outside: the relay's deletes
    // then wait on the locks, in flight through PgBouncer, where the KILL finds them.
    const held: ServerResponse[] = [];
    receiver.answer = (_request, response) => {
      held.push(response);
    };
    const table = 'pgbk_relay';
    const { outbox, log } = await pooledOutbox(newOutbox, b, db.url, table);
    outbox.relay('pgbk.relayed', webhookSink({ url: receiver.url('/hooks') }), {
      leaseTtlMs: 5_000,
      minPollIntervalMs: 20,
      maxPollIntervalMs: 100,
    });
    outbox.start();
    const bodies = Array.from({ length: 50 }, (_, n) => ({ n }));
    await publishCommitted(outbox, db.pool, 'pgbk.relayed', bodies);
    await waitFor(() => held.length === bodies.length, { what: 'every row sent, its confirm held' });
    const locker = await db.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(`SELECT id FROM ${table} FOR UPDATE`);
      for (const response of held.splice(0)) response.writeHead(204).end();
      await waitFor(
        async () => {
          const { rows } = await db.pool.query(
            `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%DELETE FROM%'`,
          );
          return rows.length > 0;
        },
        { what: 'a delete of confirmed rows waiting on the locks' },
      );
      await b.admin(`KILL ${DATABASE}`);
      await b.admin(`RESUME ${DATABASE}`);
    } finally {
      // The orphaned delete goes on once the locks are gone: it may land after its client was told it failed.
      await locker.query('ROLLBACK');
      locker.release();
    }
    receiver.answer = (_request, response) => {
      response.writeHead(204).end();
    };
    await waitFor(async () => (await remaining(db.pool, 'pgbk.relayed', table)) === 0, {
      what: 'every row confirmed and deleted',
      timeoutMs: 30_000,
    });
    const received = new Set(receiver.requests.map((request) => (JSON.parse(request.body.toString()) as { n: number }).n));
    assert.equal(received.size, bodies.length, 'every committed row reached the broker at least once');
    const { rows } = await db.pool.query(`SELECT 1 FROM ${table}_dlq`);
    assert.equal(rows.length, 0, 'a KILL is no reason to dead-letter');
    assert.ok(log.of('relayed').length >= bodies.length);
    await outbox.stop();
  });
});
