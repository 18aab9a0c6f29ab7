import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';

import pg from 'pg';

import { InvalidOptionError, type NotifyMode, NotInTransactionError, type Outbox } from '../../src/index.js';
import { readSignal } from '../../src/queues/channel-signal.js';
import { useTestDatabase } from '../support/database.js';
import { listen } from '../support/listen.js';
import { killListener, listenersOf } from '../support/listener-backend.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted } from '../support/publish.js';
import { FAST_POLL, handledBodiesOf, handlerStartsOf, migratedOutbox, SLOW_POLL } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const HOUR_MS = 3_600_000;
const newOutbox = outboxFactory(db);

/** A pool of its own (another process's connections, as far as wake-ups go), ended at the file's cleanup. */
function ownPool(): pg.Pool {
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  db.onCleanup(() => pool.end());
  return pool;
}

/** Open LISTEN connections for the outbox table `table`. */
const listeners = (table: string) => listenersOf(db.pool, table);

describe('timers', () => {
  test('a delayed message is delivered at its time, not before', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'w_timer');
    const handledAt: number[] = [];
    outbox.subscribe(
      'timer',
      () => {
        handledAt.push(Date.now());
      },
      FAST_POLL,
    );
    outbox.start();
    const publishedAt = Date.now();
    await inTransaction(db.pool, (c) => outbox.publish(c, 'timer', 'later', { activateInMs: 400 }));
    await log.waitFor('acked');
    const waited = handledAt[0]! - publishedAt;
    assert.ok(waited >= 380, `delivered after ${waited} ms, not before its time`);
    assert.ok(waited < 2_000, `and soon after it (${waited} ms): the poll interval bounds the lateness`);
  });

  test('a cancelled timer never delivers', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'w_cancel');
    const bodies: unknown[] = [];
    outbox.subscribe(
      'cancel',
      (message) => {
        bodies.push(message.body);
      },
      FAST_POLL,
    );
    outbox.start();
    // Due in 1 s: the cancel, a transaction later, must come first even on a loaded machine.
    await inTransaction(db.pool, (c) => outbox.publish(c, 'cancel', 'cancelled', { timerId: 'reminder-1', activateInMs: 1_000 }));
    assert.equal(await inTransaction(db.pool, (c) => outbox.cancelTimer(c, 'cancel', 'reminder-1')), true);
    // A sentinel due after the cancelled one: once it is handled, the cancelled one would have been too.
    await inTransaction(db.pool, (c) => outbox.publish(c, 'cancel', 'sentinel', { activateInMs: 1_200 }));
    await log.waitFor('acked');
    assert.deepEqual(bodies, ['sentinel']);
  });

  test('cancelTimer outside a transaction is refused, as publish is, unless autocommit: true', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'w_cancel_pool');
    await inTransaction(db.pool, (c) => outbox.publish(c, 'later', 'x', { timerId: 't1', activateInMs: HOUR_MS }));
    // The pool by mistake: the delete would commit on its own, and the caller's rollback would not bring the timer back.
    await assert.rejects(outbox.cancelTimer(db.pool, 'later', 't1'), NotInTransactionError);
    const idle = await db.pool.connect();
    try {
      await assert.rejects(outbox.cancelTimer(idle, 'later', 't1'), NotInTransactionError);
    } finally {
      idle.release();
    }
    await assert.rejects(
      outbox.cancelTimer(db.pool, 'later', 't1', { autocommit: 'yes' } as never),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'autocommit',
    );
    assert.equal(await outbox.cancelTimer(db.pool, 'later', 't1', { autocommit: true }), true);
    // A timer id PostgreSQL cannot store is refused before any statement, as publish refuses it.
    await assert.rejects(
      outbox.cancelTimer(db.pool, 'later', 't\u0000', { autocommit: true }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'timerId',
    );
  });
});

// cancelTimer's wake-up of the rows behind a keyed timer is a second statement when it travels
// inside the transaction ('in-transaction'). Made to fail here by a role that may not call
// pg_notify (revoked from PUBLIC in this file's database; the superuser's other tests bypass it).
test("cancelTimer's failed wake-up: with autocommit the committed cancel is reported, with a warning; inside a transaction it fails the transaction", async (t) => {
  const { rows: who } = await db.pool.query<{ rolsuper: boolean }>('SELECT rolsuper FROM pg_roles WHERE rolname = current_user');
  if (who[0]?.rolsuper !== true) {
    t.skip('needs a superuser DATABASE_URL: it revokes pg_notify from PUBLIC in its database');
    return;
  }
  const table = 'w_cancel_wake_fails';
  const outbox = newOutbox({ pool: db.pool, table, notify: 'in-transaction' });
  await outbox.migrate();
  const timerWithRowBehind = (timerId: string) =>
    inTransaction(db.pool, async (c) => {
      await outbox.publish(c, 'keyed', 'timer', { orderingKey: timerId, timerId, activateInMs: HOUR_MS });
      await outbox.publish(c, 'keyed', 'behind', { orderingKey: timerId });
    });
  await timerWithRowBehind('autocommit');
  await timerWithRowBehind('in-transaction');
  const role = `no_notify_${process.pid}`;
  const url = new URL(db.url);
  url.username = role;
  url.password = 'pw';
  const pool = new pg.Pool({ connectionString: url.toString(), max: 2 });
  try {
    await db.pool.query(`DROP ROLE IF EXISTS ${role}`);
    await db.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD 'pw'`);
    await db.pool.query(`GRANT SELECT, UPDATE, DELETE ON ${table} TO ${role}`);
    await db.pool.query('REVOKE EXECUTE ON FUNCTION pg_notify(text, text) FROM PUBLIC');
    const restricted = newOutbox({ pool, table, notify: 'in-transaction' });
    assert.equal(await restricted.cancelTimer(pool, 'keyed', 'autocommit', { autocommit: true }), true);
    assert.ok(
      newOutbox.logger.messages('warn').some((m) => m.includes('cancelTimer (autocommit) committed, but its wake-up failed')),
    );
    await assert.rejects(
      inTransaction(pool, (c) => restricted.cancelTimer(c, 'keyed', 'in-transaction')),
      /permission denied for function pg_notify/,
    );
    const { rows } = await db.pool.query<{ timer_id: string }>(`SELECT timer_id FROM ${table} WHERE timer_id IS NOT NULL`);
    assert.deepEqual(
      rows.map((row) => row.timer_id),
      ['in-transaction'],
      "the autocommit cancel stands, the transaction's rolled back",
    );
  } finally {
    // Each step on its own: a role outlives this file's database (it is the server's).
    await pool.end().catch(() => undefined);
    await db.pool.query('GRANT EXECUTE ON FUNCTION pg_notify(text, text) TO PUBLIC').catch(() => undefined);
    await db.pool.query(`DROP OWNED BY ${role}`).catch(() => undefined);
    await db.pool.query(`DROP ROLE IF EXISTS ${role}`);
  }
});

describe('the shared LISTEN connection', () => {
  test('one listener per Outbox serves every subscription, waking only the notified queue', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'w_shared');
    const slow = { minPollIntervalMs: 60_000, maxPollIntervalMs: 60_000 };
    outbox.subscribe('one', () => undefined, { name: 'one', ...slow });
    outbox.subscribe('two', () => undefined, { name: 'two', ...slow });
    outbox.start();
    await waitFor(() => log.of('fetched').length >= 2, { what: 'first empty fetches' });
    await waitFor(async () => (await listeners('w_shared')) === 1, { what: 'one LISTEN connection for two subscriptions' });
    // A (re)connect wakes every subscription once: wait until that fetch, too, is behind us.
    const fetchesOf = (subscriber: string) => log.of('fetched').filter((e) => e.subscriber === subscriber).length;
    let settled = -1;
    await waitFor(
      async () => {
        await new Promise((resolve) => setTimeout(resolve, 150));
        const now = fetchesOf('two');
        const quiet = now === settled;
        settled = now;
        return quiet;
      },
      { what: 'subscription two to go quiet' },
    );
    const fetchesOfTwo = fetchesOf('two');
    await publishCommitted(outbox, db.pool, 'one', ['x']);
    await log.waitFor('acked');
    assert.equal(fetchesOf('two'), fetchesOfTwo, 'queue two was not woken');
  });

  test('a killed LISTEN connection reconnects; wake-ups work again', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'w_reconnect');
    // Rows come from another Outbox (another process, as far as wake-ups go): this Outbox's own
    // publishes would wake its subscription directly, without the LISTEN connection under test.
    const other = newOutbox({ pool: db.pool, table: 'w_reconnect' });
    outbox.subscribe('re', () => undefined, { minPollIntervalMs: 60_000, maxPollIntervalMs: 60_000 });
    outbox.start();
    await log.waitFor('fetched');
    const fetchesBefore = log.of('fetched').length;
    await killListener(db.pool, 'w_reconnect');
    await waitFor(async () => (await listeners('w_reconnect')) === 1, { what: 'listener back', timeoutMs: 10_000 });
    // The reconnect wakes every subscription once (notifications may have been missed): one
    // fetch. After it, only a NOTIFY can start the handler before the 60 s poll.
    await waitFor(() => log.of('fetched').length > fetchesBefore, { what: 'the fetch after reconnecting' });
    await publishCommitted(other, db.pool, 're', ['x']);
    await log.waitFor('acked', 1, 5_000);
    assert.ok(newOutbox.logger.messages('warn').some((m) => m.includes('LISTEN connection failed')));
  });

  test("listen: false opens no LISTEN connection; other processes' rows are found by polling", async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'w_poll', { listen: false });
    const other = newOutbox({ pool: db.pool, table: 'w_poll' });
    outbox.subscribe('poll', () => undefined, FAST_POLL);
    outbox.start();
    await publishCommitted(other, db.pool, 'poll', ['x']);
    await log.waitFor('acked');
    assert.equal(await listeners('w_poll'), 0);
  });
});

// A retry is written by this process, which knows when it is due: it runs then, not at the next
// poll (which had backed off to maxPollIntervalMs while the handler ran). Multi-queue subscriptions
// get this from their schedule (subscriber-queue-schedule.test.ts, "a retry in an idle queue").
describe('retries on time', () => {
  for (const lease of ['token', 'row-lock'] as const) {
    test(`a retry runs when it is due, though the poll is 30 s (lease: ${lease})`, async () => {
      const table = lease === 'token' ? 'w_retry_due' : 'w_retry_due_rl';
      const { outbox } = await migratedOutbox(newOutbox, db.pool, table);
      const runsAt: number[] = [];
      outbox.subscribe(
        'retried',
        (_message, ctx) => {
          runsAt.push(Date.now());
          if (runsAt.length === 1) ctx.nack({ delayMs: 700 });
          else ctx.ack();
        },
        { lease, ...SLOW_POLL },
      );
      outbox.start();
      await inTransaction(db.pool, (c) => outbox.publish(c, 'retried', 'again'));
      await waitFor(() => runsAt.length === 2, { what: 'the retry (the poll is 30 s)', timeoutMs: 5_000 });
      const waited = runsAt[1]! - runsAt[0]!;
      assert.ok(waited >= 690, `run again after ${waited} ms, not before the retry was due`);
      assert.ok(waited < 3_000, `and soon after it was due (${waited} ms)`);
    });
  }
});

// A retry sends no NOTIFY: the subscription that wrote it wakes itself when it is due. A process
// that stops hands its retries over, announcing them as a delayed publish does.
describe('retries of a process that stopped', () => {
  /**
   * A promise the handlers wait on until release(); released after the test in any case: a failed
   * wait before release() would leave a handler holding the file's cleanup for its drain budget.
   */
  function gate(t: { after: (fn: () => void) => void }): { released: Promise<void>; release: () => void } {
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    t.after(() => {
      release();
    });
    return {
      released,
      release: () => {
        release();
      },
    };
  }

  for (const lease of ['token', 'row-lock'] as const) {
    test(`another process's consumer runs them when due, though its poll is 30 s (lease: ${lease})`, async (t) => {
      const table = lease === 'token' ? 'w_retry_hand_over' : 'w_retry_hand_over_rl';
      const { outbox: first } = await migratedOutbox(newOutbox, db.pool, table);
      const { released, release } = gate(t);
      let firstRuns = 0;
      first.subscribe(
        'retried',
        async (_message, ctx) => {
          firstRuns += 1;
          await released;
          ctx.nack({ delayMs: 2_000 });
        },
        { lease, ...SLOW_POLL },
      );
      first.start();
      await inTransaction(db.pool, (c) => first.publish(c, 'retried', 'again'));
      await waitFor(() => firstRuns === 1, { what: 'the first run' });
      // The second process listens before the retry is written: its read on connect cannot see it.
      const second = newOutbox({ pool: ownPool(), table });
      const secondRuns = handlerStartsOf(second, 'retried');
      second.start();
      await waitFor(async () => (await listeners(table)) === 2, { what: 'both listening' });
      release();
      const retriedAt = Date.now();
      await first.stop();
      await waitFor(() => secondRuns.length === 1, {
        what: 'the retry in the other process (its poll is 30 s)',
        timeoutMs: 8_000,
      });
      const waited = secondRuns[0]! - retriedAt;
      assert.ok(waited >= 1_900 && waited < 3_500, `ran ${waited} ms after the retry was written`);
    });
  }

  test('a retry that came due while the stopping process drained runs in the other process once the drain ended', async (t) => {
    const table = 'w_retry_due_in_drain';
    const { outbox: first } = await migratedOutbox(newOutbox, db.pool, table);
    let firstRuns = 0;
    const { released, release } = gate(t);
    first.subscribe(
      'retried',
      async (message, ctx) => {
        firstRuns += 1;
        await released;
        if (message.body === 'fails') ctx.nack({ delayMs: 300 });
        else await delay(1_500); // the drain waits for it, long after the retry came due
      },
      { concurrency: 2, ...SLOW_POLL },
    );
    first.start();
    const second = newOutbox({ pool: db.pool, table });
    const secondRuns = handledBodiesOf(second, 'retried');
    await inTransaction(db.pool, (c) => first.publishBatch(c, 'retried', ['fails', 'slow']));
    await waitFor(() => firstRuns === 2, { what: 'both rows running in the first process' });
    second.start();
    // The second process listens before the retry is written: its read on connect cannot see it.
    await waitFor(async () => (await listeners(table)) === 2, { what: 'both listening' });
    release();
    const stoppedAt = Date.now();
    await first.stop();
    const drained = Date.now() - stoppedAt;
    await waitFor(() => secondRuns.length === 1, { what: 'the retry in the other process (its poll is 30 s)', timeoutMs: 5_000 });
    assert.deepEqual(secondRuns, ['fails']);
    assert.ok(drained >= 1_000, `the drain lasted ${drained} ms, past the retry's due time`);
  });
});

// A delayed publish sends no plain wake-up (the row is not due), so a consumer in another process
// found it by polling: up to maxPollIntervalMs (10 s by default) late. The publish now announces
// when it is due, and every consumer of the queue wakes then.
describe('delayed publishes on time', () => {
  type Publish = (outbox: Outbox, pool: pg.Pool, queue: string) => Promise<unknown>;
  const DELAY_MS = 600;
  const cases: [string, NotifyMode, Publish][] = [
    [
      'publish in a transaction',
      'after-commit',
      (o, pool, q) => inTransaction(pool, (c) => o.publish(c, q, 'later', { activateInMs: DELAY_MS })),
    ],
    [
      'publish with autocommit',
      'after-commit',
      (o, pool, q) => o.publish(pool, q, 'later', { activateInMs: DELAY_MS, autocommit: true }),
    ],
    [
      'publish, notify in-transaction',
      'in-transaction',
      (o, pool, q) => inTransaction(pool, (c) => o.publish(c, q, 'later', { activateInMs: DELAY_MS })),
    ],
    [
      'publishBatch',
      'after-commit',
      (o, pool, q) => inTransaction(pool, (c) => o.publishBatch(c, q, ['a', 'b'], { activateInMs: DELAY_MS })),
    ],
    [
      'publishBatch, notify in-transaction',
      'in-transaction',
      (o, pool, q) => inTransaction(pool, (c) => o.publishBatch(c, q, ['a', 'b'], { activateInMs: DELAY_MS })),
    ],
    [
      'a timer',
      'after-commit',
      (o, pool, q) => inTransaction(pool, (c) => o.publish(c, q, 'later', { activateInMs: DELAY_MS, timerId: 't' })),
    ],
    [
      'a timer, notify in-transaction',
      'in-transaction',
      (o, pool, q) => inTransaction(pool, (c) => o.publish(c, q, 'later', { activateInMs: DELAY_MS, timerId: 't' })),
    ],
    [
      'activateAt',
      'after-commit',
      (o, pool, q) => inTransaction(pool, (c) => o.publish(c, q, 'later', { activateAt: new Date(Date.now() + DELAY_MS) })),
    ],
  ];
  cases.forEach(([name, notify, publish], n) => {
    test(`${name}: another process's consumer runs it when it is due, though its poll is 30 s`, async () => {
      const table = `w_delayed_${n}`;
      const consumerPool = ownPool();
      const producerPool = ownPool();
      const { outbox: consumer } = await migratedOutbox(newOutbox, consumerPool, table);
      const handledAt = handlerStartsOf(consumer, 'later');
      consumer.start();
      await waitFor(async () => (await listeners(table)) === 1, { what: 'the consumer listening' });
      const producer = newOutbox({ pool: producerPool, table, notify });
      const publishedAt = Date.now();
      await publish(producer, producerPool, 'later');
      const rows = name.startsWith('publishBatch') ? 2 : 1;
      await waitFor(() => handledAt.length === rows, { what: 'the delayed rows (the poll is 30 s)', timeoutMs: 8_000 });
      const waited = handledAt[0]! - publishedAt;
      assert.ok(waited >= DELAY_MS - 10, `ran after ${waited} ms, not before it was due`);
      assert.ok(waited < DELAY_MS + 2_000, `and soon after it was due (${waited} ms)`);
    });
  });

  for (const notify of ['after-commit', 'in-transaction'] as const) {
    test(`the announced time is the database's (notify: ${notify}): a keyed row's as its key set it, a long transaction's already past`, async () => {
      const table = notify === 'after-commit' ? 'w_announce_db' : 'w_announce_db_tx';
      const outbox = newOutbox({ pool: db.pool, table, notify });
      await outbox.migrate();
      const listener = await listen(db.url, outbox.channel);
      try {
        await inTransaction(db.pool, async (c) => {
          await outbox.publish(c, 'keyed', 'first', { orderingKey: 'k', activateInMs: 5_000 });
          // Due behind its key's first row, not in 300 ms.
          await outbox.publish(c, 'keyed', 'second', { orderingKey: 'k', activateInMs: 300 });
        });
        await inTransaction(db.pool, async (c) => {
          // A transaction older than the delay: the row is due at COMMIT, by the database's clock.
          await c.query('SELECT pg_sleep(0.6)');
          await outbox.publish(c, 'long', 'x', { activateInMs: 300 });
        });
        await inTransaction(db.pool, (c) => outbox.publish(c, 'sentinel', 'x'));
        await listener.waitFor('sentinel');
        const announced = listener.payloads.map(readSignal).filter((signal) => signal.kind === 'due');
        const keyed = announced.filter((signal) => signal.queue === 'keyed').map((signal) => signal.inMs);
        assert.ok(keyed.length >= 1 && keyed.every((inMs) => inMs > 4_500 && inMs <= 5_100), JSON.stringify(keyed));
        const long = announced.filter((signal) => signal.queue === 'long').map((signal) => signal.inMs);
        assert.deepEqual(long, [0]);
      } finally {
        await listener.close();
      }
    });
  }

  for (const notify of ['after-commit', 'in-transaction'] as const) {
    test(`cancelling a keyed timer (notify: ${notify}): the row behind it runs at once in another process's consumer`, async () => {
      const table = notify === 'after-commit' ? 'w_cancel_keyed' : 'w_cancel_keyed_tx';
      const consumerPool = ownPool();
      const { outbox: consumer } = await migratedOutbox(newOutbox, consumerPool, table);
      const handled = handledBodiesOf(consumer, 'keyed');
      consumer.start();
      await waitFor(async () => (await listeners(table)) === 1, { what: 'the consumer listening' });
      const producer = newOutbox({ pool: db.pool, table, notify });
      await inTransaction(db.pool, async (c) => {
        await producer.publish(c, 'keyed', 'timer', { orderingKey: 'k', timerId: 't', activateInMs: HOUR_MS });
        // Due now, but behind its key's timer: due when the timer is.
        await producer.publish(c, 'keyed', 'behind', { orderingKey: 'k' });
      });
      await delay(300);
      const cancelledAt = Date.now();
      assert.equal(await inTransaction(db.pool, (c) => producer.cancelTimer(c, 'keyed', 't')), true);
      await waitFor(() => handled.length === 1, {
        what: 'the row behind the cancelled timer (the poll is 30 s)',
        timeoutMs: 8_000,
      });
      assert.deepEqual(handled, ['behind']);
      assert.ok(Date.now() - cancelledAt < 3_000);
    });
  }

  test('the publishing process: its own consumer, with LISTEN off, runs the row when it is due', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'w_delayed_local', { listen: false });
    const handledAt = handlerStartsOf(outbox, 'later');
    outbox.start();
    await delay(200);
    const publishedAt = Date.now();
    await inTransaction(db.pool, (c) => outbox.publish(c, 'later', 'later', { activateInMs: DELAY_MS }));
    await waitFor(() => handledAt.length === 1, { what: 'the delayed row (the poll is 30 s)', timeoutMs: 8_000 });
    const waited = handledAt[0]! - publishedAt;
    assert.ok(waited >= DELAY_MS - 10 && waited < DELAY_MS + 2_000, `ran after ${waited} ms`);
  });
});

// A consumer hears an announcement only while it listens: rows delayed before it started (a
// deploy), or while its LISTEN connection was down, are read from the table when it (re)connects.
describe('delayed rows published while nobody listened', () => {
  const dueReadWarnings = () =>
    newOutbox.logger.messages('warn').filter((m) => m.includes('could not read when delayed rows come due'));

  /** Subscribes `queue` with SLOW_POLL; the returned map gets each body's handler start (Date.now()). */
  function startsByBody(outbox: Outbox, queue: string, lease: 'token' | 'row-lock' = 'token'): Map<string, number> {
    const startedAt = new Map<string, number>();
    outbox.subscribe(
      queue,
      (message) => {
        startedAt.set(String(message.body), Date.now());
      },
      { lease, ...SLOW_POLL },
    );
    return startedAt;
  }

  for (const lease of ['token', 'row-lock'] as const) {
    test(`rows delayed before the consumer started each run when due: more than one read of them holds (lease: ${lease})`, async () => {
      const table = lease === 'token' ? 'w_due_before_start' : 'w_due_before_start_rl';
      const producer = newOutbox({ pool: db.pool, table });
      await producer.migrate();
      // 120 rows 15 ms apart: more than one read's worth (100 per queue), none sharing a wake-up.
      const ROWS = 120;
      const FIRST_MS = 1_500;
      const publishedAt = Date.now();
      await inTransaction(db.pool, async (c) => {
        for (let i = 0; i < ROWS; i += 1) await producer.publish(c, 'later', String(i), { activateInMs: FIRST_MS + i * 15 });
      });
      const committedAt = Date.now();
      const consumerPool = ownPool();
      const consumer = newOutbox({ pool: consumerPool, table });
      const startedAt = startsByBody(consumer, 'later', lease);
      consumer.start();
      await waitFor(() => startedAt.size === ROWS, { what: 'every delayed row (the poll is 30 s)', timeoutMs: 8_000 });
      for (let i = 0; i < ROWS; i += 1) {
        const dueMs = FIRST_MS + i * 15;
        const ranAt = startedAt.get(String(i))!;
        assert.ok(ranAt >= publishedAt + dueMs - 10, `row ${i} ran ${publishedAt + dueMs - ranAt} ms early`);
        assert.ok(ranAt < committedAt + dueMs + 1_000, `row ${i} ran ${ranAt - committedAt - dueMs} ms late`);
      }
    });
  }

  test("a subscription added while listening: its queue's rows delayed before it run when due", async () => {
    const table = 'w_due_subscribed_later';
    const consumerPool = ownPool();
    const { outbox: consumer } = await migratedOutbox(newOutbox, consumerPool, table);
    consumer.subscribe('first', () => undefined, SLOW_POLL);
    consumer.start();
    await waitFor(async () => (await listeners(table)) === 1, { what: 'the consumer listening' });
    const producer = newOutbox({ pool: db.pool, table });
    const publishedAt = Date.now();
    await inTransaction(db.pool, (c) => producer.publish(c, 'later', 'x', { activateInMs: 1_500 }));
    // Announced, but for a queue nobody here served: ignored.
    await delay(100);
    const startedAt = startsByBody(consumer, 'later');
    await waitFor(() => startedAt.size === 1, { what: 'the delayed row (the poll is 30 s)', timeoutMs: 8_000 });
    const waited = startedAt.get('x')! - publishedAt;
    assert.ok(waited >= 1_490 && waited < 2_500, `ran after ${waited} ms`);
  });

  test('a row delayed while the LISTEN connection was down runs when due, after the reconnect', async () => {
    const table = 'w_due_reconnect';
    const consumerPool = ownPool();
    const { outbox: consumer } = await migratedOutbox(newOutbox, consumerPool, table);
    const startedAt = startsByBody(consumer, 'later');
    consumer.start();
    await waitFor(async () => (await listeners(table)) === 1, { what: 'the consumer listening' });
    const producer = newOutbox({ pool: db.pool, table });
    await killListener(db.pool, table);
    // The listener reconnects after about 500 ms: the announcement goes out before it listens again.
    const publishedAt = Date.now();
    await inTransaction(db.pool, (c) => producer.publish(c, 'later', 'x', { activateInMs: 1_500 }));
    assert.equal(await listeners(table), 0, 'published while nobody listened');
    await waitFor(() => startedAt.size === 1, { what: 'the delayed row (the poll is 30 s)', timeoutMs: 8_000 });
    const waited = startedAt.get('x')! - publishedAt;
    assert.ok(waited >= 1_490 && waited < 2_500, `ran after ${waited} ms`);
  });

  test('a read of due times that fails (a lock held past its lock_timeout) is tried again, and the row runs when due', async () => {
    const table = 'w_due_read_retry';
    const producer = newOutbox({ pool: db.pool, table });
    await producer.migrate();
    const publishedAt = Date.now();
    await inTransaction(db.pool, (c) => producer.publish(c, 'later', 'x', { activateInMs: 6_000 }));
    // A migration's lock: the LISTEN connection opens at most 1 s after start (the claim blocks
    // too, so it never idles), its read waits 2 s (lock_timeout) and fails; the lock goes at 3.5 s,
    // and the read tried again 1 s after the failure finds the row.
    const warningsBefore = dueReadWarnings().length;
    const locker = await db.pool.connect();
    const consumerPool = ownPool();
    const consumer = newOutbox({ pool: consumerPool, table });
    try {
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      const startedAt = startsByBody(consumer, 'later');
      consumer.start();
      await delay(3_500);
      await locker.query('COMMIT');
      await waitFor(() => startedAt.size === 1, { what: 'the delayed row (the poll is 30 s)', timeoutMs: 8_000 });
      const waited = startedAt.get('x')! - publishedAt;
      assert.ok(waited >= 5_990 && waited < 7_000, `ran after ${waited} ms`);
      assert.equal(dueReadWarnings().length - warningsBefore, 1, 'one warning for the failures in a row');
    } finally {
      await locker.query('ROLLBACK').catch(() => undefined);
      locker.release();
    }
  });
});
