import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import pg from 'pg';

import { InvalidOptionError, NotInTransactionError, Outbox } from '../../src/index.js';
import { quoteIdent } from '../../src/schema/identifiers.js';
import { useTestDatabase } from '../support/database.js';
import { EventLog } from '../support/events.js';
import { outboxFactory } from '../support/outboxes.js';
import { waitFor } from '../support/wait-for.js';

/**
 * Wake-up after commit (decision 0004): the caller's transaction sends no NOTIFY; the Outbox's
 * notifier sends it after node-postgres reported the COMMIT. A notification carries the backend
 * pid that sent it, which tells the two modes apart exactly: the publisher's own backend
 * (in-transaction) or the notifier's.
 */

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

interface Notification {
  readonly payload: string;
  readonly pid: number;
}

interface Listener {
  readonly seen: Notification[];
  payloads(): string[];
  waitFor(payload: string): Promise<Notification>;
  close(): Promise<void>;
}

async function listen(channel: string): Promise<Listener> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  const seen: Notification[] = [];
  client.on('notification', (message) => {
    if (message.channel === channel) seen.push({ payload: message.payload ?? '', pid: message.processId });
  });
  await client.query(`LISTEN ${quoteIdent(channel)}`);
  return {
    seen,
    payloads: () => seen.map((n) => n.payload),
    async waitFor(payload) {
      await waitFor(() => seen.some((n) => n.payload === payload), { what: `NOTIFY ${payload}` });
      return seen.find((n) => n.payload === payload)!;
    },
    close: () => client.end(),
  };
}

async function backendPid(client: pg.ClientBase): Promise<number> {
  return (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
}

/**
 * Publishes `queue` in a committed transaction of its own; returns the publishing backend's pid.
 * Notifications arrive in commit order, so this is also a sentinel.
 */
async function committed(outbox: Outbox, queue: string): Promise<number> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    await outbox.publish(client, queue, 'x');
    await client.query('COMMIT');
    return await backendPid(client);
  } finally {
    client.release();
  }
}

async function rows(table: string, queue: string): Promise<number> {
  const { rows: r } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${quoteIdent(table)} WHERE queue = $1`, [
    queue,
  ]);
  return r[0]?.n ?? -1;
}

/** Whether backend `pid` is still connected (the notifier's pid is the one its notifications carry). */
async function connected(pid: number): Promise<boolean> {
  const { rows: r } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [pid]);
  return r[0]?.n === 1;
}

/** A migrated Outbox on its own table, and a LISTENer on its channel (closed after the test). */
async function setup(
  t: { after: (fn: () => Promise<void>) => void },
  table: string,
  notify?: 'after-commit' | 'in-transaction',
): Promise<{ outbox: Outbox; listener: Listener }> {
  const outbox = newOutbox({ pool: db.pool, table, ...(notify === undefined ? {} : { notify }) });
  await outbox.migrate();
  const listener = await listen(`txoutbox.${table}`);
  t.after(() => listener.close());
  return { outbox, listener };
}

function listenerCounts(client: pg.ClientBase): Record<string, number> {
  const connection = (client as unknown as { connection: NodeJS.EventEmitter }).connection;
  return Object.fromEntries(['commandComplete', 'readyForQuery', 'end'].map((event) => [event, connection.listenerCount(event)]));
}

describe("notify: 'after-commit' (the default)", () => {
  test('wakes only after COMMIT, from the notifier connection; in-transaction wakes from the publisher', async (t) => {
    const { outbox, listener } = await setup(t, 'a_order');
    const client = await db.pool.connect();
    try {
      const publisherPid = await backendPid(client);
      await client.query('BEGIN');
      await outbox.publish(client, 'held.q', 'x');
      // The transaction is still open: a sentinel committed meanwhile arrives, the held wake-up does not.
      await committed(outbox, 'sentinel-1.q');
      await listener.waitFor('sentinel-1.q');
      assert.deepEqual(listener.payloads(), ['sentinel-1.q']);
      await client.query('COMMIT');
      const woke = await listener.waitFor('held.q');
      assert.notEqual(woke.pid, publisherPid, 'sent by the notifier, not inside the publisher transaction');

      const inTx = newOutbox({ pool: db.pool, table: 'a_order', notify: 'in-transaction' });
      await client.query('BEGIN');
      await inTx.publish(client, 'in-tx.q', 'x');
      await client.query('COMMIT');
      assert.equal((await listener.waitFor('in-tx.q')).pid, publisherPid, 'pg_notify inside the publisher transaction');
    } finally {
      client.release();
    }
  });

  test('a COMMIT of a failed transaction (answered ROLLBACK) wakes nobody', async (t) => {
    const { outbox, listener } = await setup(t, 'a_failed');
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await outbox.publish(client, 'failed.q', 'x');
      await assert.rejects(client.query('SELECT 1/0'), /division by zero/);
      const { command } = await client.query('COMMIT');
      assert.equal(command, 'ROLLBACK');
      await committed(outbox, 'sentinel.q');
      await listener.waitFor('sentinel.q');
      assert.deepEqual(listener.payloads(), ['sentinel.q']);
      assert.equal(await rows('a_failed', 'failed.q'), 0);
    } finally {
      client.release();
    }
  });

  test('a COMMIT that fails (deferred constraint violation) wakes nobody', async (t) => {
    const { outbox, listener } = await setup(t, 'a_deferred');
    await db.pool.query('CREATE TABLE deferred_parent (id int PRIMARY KEY)');
    await db.pool.query('CREATE TABLE deferred_child (parent int REFERENCES deferred_parent (id) DEFERRABLE INITIALLY DEFERRED)');
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('INSERT INTO deferred_child VALUES (42)');
      await outbox.publish(client, 'deferred.q', 'x');
      await assert.rejects(client.query('COMMIT'), /violates foreign key constraint/);
      // node-postgres rejects on the ErrorResponse; the ReadyForQuery that ends the transaction may come a read later.
      await waitFor(() => client.getTransactionStatus() === 'I', { what: 'the failed COMMIT ended the transaction' });
      await committed(outbox, 'sentinel.q');
      await listener.waitFor('sentinel.q');
      assert.deepEqual(listener.payloads(), ['sentinel.q']);
      assert.equal(await rows('a_deferred', 'deferred.q'), 0);
    } finally {
      client.release();
    }
  });

  test('COMMIT AND CHAIN wakes for the committed transaction; the chained one rolled back wakes nobody', async (t) => {
    const { outbox, listener } = await setup(t, 'a_chain');
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await outbox.publish(client, 'first.q', 'x');
      await client.query('COMMIT AND CHAIN');
      assert.equal(client.getTransactionStatus(), 'T');
      await listener.waitFor('first.q');
      await outbox.publish(client, 'chained.q', 'x');
      await client.query('ROLLBACK');
      await committed(outbox, 'sentinel.q');
      await listener.waitFor('sentinel.q');
      assert.deepEqual(listener.payloads(), ['first.q', 'sentinel.q']);
      assert.equal(await rows('a_chain', 'chained.q'), 0);
    } finally {
      client.release();
    }
  });

  test('documented: ROLLBACK TO SAVEPOINT and ROLLBACK AND CHAIN cannot be told apart, so a discarded publish may wake once, at the next COMMIT', async (t) => {
    const { outbox, listener } = await setup(t, 'a_savepoint');
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SAVEPOINT s1');
      await outbox.publish(client, 'discarded.q', 'x');
      await client.query('ROLLBACK TO SAVEPOINT s1');
      await committed(outbox, 'sentinel-1.q');
      await listener.waitFor('sentinel-1.q');
      assert.deepEqual(listener.payloads(), ['sentinel-1.q'], 'nothing before the COMMIT');
      await client.query('COMMIT');
      await listener.waitFor('discarded.q');
      assert.equal(await rows('a_savepoint', 'discarded.q'), 0, 'a spurious wake-up: an empty fetch, nothing delivered');

      await client.query('BEGIN');
      await outbox.publish(client, 'rolled-back.q', 'x');
      await client.query('ROLLBACK AND CHAIN');
      await client.query('COMMIT');
      await listener.waitFor('rolled-back.q');
      assert.equal(await rows('a_savepoint', 'rolled-back.q'), 0);
    } finally {
      client.release();
    }
  });

  test('an un-awaited publish whose transaction ended before its statement ran is refused; a COMMIT queued ahead is not taken for ours', async (t) => {
    const { outbox, listener } = await setup(t, 'a_queued');
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      // publish encodes its body before it sends anything: the COMMIT goes first. The row was then
      // written on its own, outside the transaction it was published in.
      const publishing = outbox.publish(client, 'behind.q', 'x');
      await client.query('COMMIT');
      await assert.rejects(publishing, NotInTransactionError);
      assert.equal(await rows('a_queued', 'behind.q'), 0, 'not written outside its transaction');

      await client.query('BEGIN');
      await outbox.publish(client, 'ahead.q', 'x');
      // Not awaited: COMMIT and BEGIN are queued on the client before the next publish's INSERT,
      // which therefore runs in a second transaction: the first COMMIT is not its COMMIT.
      const queued = [client.query('COMMIT'), client.query('BEGIN')];
      await outbox.publish(client, 'second-transaction.q', 'x');
      await Promise.all(queued);
      await committed(outbox, 'sentinel.q');
      await listener.waitFor('sentinel.q');
      assert.deepEqual(listener.payloads(), ['ahead.q', 'sentinel.q'], 'not before its own COMMIT');
      await client.query('COMMIT');
      await listener.waitFor('second-transaction.q');
      assert.deepEqual(listener.payloads(), ['ahead.q', 'sentinel.q', 'second-transaction.q']);
    } finally {
      client.release();
    }
  });

  test("a client in node-postgres' pipeline mode: an un-awaited publish behind a ROLLBACK is refused by the server, never run on its own", async (t) => {
    // Pipeline mode sends each query at once, before earlier ones are answered: the status a
    // dispatch check reads is stale, so the server checks (a SAVEPOINT in the same round trip).
    const { outbox } = await setup(t, 'a_pipelined');
    const client = new pg.Client({ connectionString: db.url, pipeline: true });
    await client.connect();
    try {
      await client.query('BEGIN');
      const publishing = outbox.publish(client, 'pipelined-behind.q', 'x');
      await client.query('ROLLBACK');
      await assert.rejects(publishing, NotInTransactionError);
      assert.equal(await rows('a_pipelined', 'pipelined-behind.q'), 0, 'not written outside its transaction');

      await client.query('BEGIN');
      const ids = await Promise.all([
        outbox.publish(client, 'pipelined.q', 'a'),
        outbox.publishBatch(client, 'pipelined.q', ['b', 'c']),
      ]);
      assert.equal(ids.flat().length, 3);
      await client.query('COMMIT');
      assert.equal(await rows('a_pipelined', 'pipelined.q'), 3, 'inside its transaction, written and committed');
    } finally {
      await client.end();
    }
  });

  test('a connection lost before COMMIT wakes nobody', async (t) => {
    const { outbox, listener } = await setup(t, 'a_lost');
    const client = new pg.Client({ connectionString: db.url });
    client.on('error', () => undefined);
    await client.connect();
    const pid = await backendPid(client);
    await client.query('BEGIN');
    await outbox.publish(client, 'lost.q', 'x');
    assert.equal(listenerCounts(client).readyForQuery, 2, "node-postgres' own listener and the commit watch");
    await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
    await waitFor(() => listenerCounts(client).readyForQuery === 1, { what: 'the watch ended with the connection' });
    await client.end().catch(() => undefined);
    await committed(outbox, 'sentinel.q');
    await listener.waitFor('sentinel.q');
    assert.deepEqual(listener.payloads(), ['sentinel.q']);
  });

  test('no listener piles up on a pooled connection: one watch per transaction, gone when it ends', async (t) => {
    const { outbox, listener } = await setup(t, 'a_listeners');
    const other = newOutbox({ pool: db.pool, table: 'a_listeners_2' });
    await other.migrate();
    const otherListener = await listen('txoutbox.a_listeners_2');
    t.after(() => otherListener.close());
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    const client = await db.pool.connect();
    try {
      const idle = listenerCounts(client);
      await client.query('BEGIN');
      for (let i = 0; i < 1000; i += 1) await outbox.publish(client, 'many.q', { i });
      await outbox.publishBatch(client, 'batch.q', [1, 2, 3]);
      await other.publish(client, 'other-outbox.q', 'x');
      assert.deepEqual(listenerCounts(client), {
        commandComplete: idle.commandComplete! + 1,
        readyForQuery: idle.readyForQuery! + 1,
        end: idle.end! + 1,
      });
      await client.query('COMMIT');
      assert.deepEqual(listenerCounts(client), idle);
      await otherListener.waitFor('other-outbox.q');

      // The same pooled client, later transactions: nothing from the committed one carries over.
      await client.query('BEGIN');
      await outbox.publish(client, 'rolled-back.q', 'x');
      await client.query('ROLLBACK');
      assert.deepEqual(listenerCounts(client), idle);
      await client.query('BEGIN');
      await client.query('SELECT 1');
      await client.query('COMMIT');
      await committed(outbox, 'sentinel.q');
      await listener.waitFor('sentinel.q');
      assert.deepEqual(listener.payloads(), ['many.q', 'batch.q', 'sentinel.q']);
      assert.deepEqual(otherListener.payloads(), ['other-outbox.q']);
    } finally {
      client.release();
      process.off('warning', onWarning);
    }
    assert.deepEqual(
      warnings.map((w) => w.name),
      [],
    );
  });

  test('autocommit publishes (a pool, a client outside BEGIN) wake once the statement returns', async (t) => {
    const { outbox, listener } = await setup(t, 'a_autocommit');
    await outbox.publish(db.pool, 'pool.q', 'x', { autocommit: true });
    await listener.waitFor('pool.q');
    const client = await db.pool.connect();
    try {
      await outbox.publishBatch(client, 'idle.q', ['x', 'y'], { autocommit: true });
      await listener.waitFor('idle.q');
      assert.equal(listenerCounts(client).readyForQuery, 1, 'no watch on an idle client');
    } finally {
      client.release();
    }
  });

  test('preparedStatements: false (PgBouncer transaction mode): the notifier sends its statement unnamed, with no session SET', async (t) => {
    const { listener } = await setup(t, 'a_unnamed');
    const outbox = newOutbox({ pool: db.pool, table: 'a_unnamed', preparedStatements: false });
    await committed(outbox, 'unnamed.q');
    const { pid } = await listener.waitFor('unnamed.q');
    const { rows: activity } = await db.pool.query<{ query: string }>('SELECT query FROM pg_stat_activity WHERE pid = $1', [pid]);
    // Its only statement: synchronous_commit off local to its own transaction, nothing left on the session.
    assert.match(activity[0]?.query ?? '', /^SELECT pg_notify\(.*set_config\('synchronous_commit', 'off', true\)/s);
  });

  test('executors whose COMMIT cannot be observed keep pg_notify in the transaction', async (t) => {
    const { outbox, listener } = await setup(t, 'a_fallback');
    const client = await db.pool.connect();
    const pipelined = new pg.Client({ connectionString: db.url, pipeline: true });
    await pipelined.connect();
    try {
      // A wrapper without `connection` (another driver's adapter would look like this).
      const wrapper = {
        query: (config: { text: string; values?: unknown[]; name?: string }) => client.query(config),
        getTransactionStatus: () => client.getTransactionStatus(),
      };
      await client.query('BEGIN');
      await outbox.publish(wrapper, 'wrapped.q', 'x');
      await client.query('COMMIT');
      assert.equal((await listener.waitFor('wrapped.q')).pid, await backendPid(client));
      await client.query('BEGIN');
      await outbox.publish(wrapper, 'wrapped-rolled-back.q', 'x');
      await client.query('ROLLBACK');

      // node-postgres' pipeline mode: answers to later queries can arrive in the same read as ours.
      await pipelined.query('BEGIN');
      await outbox.publish(pipelined, 'pipelined.q', 'x');
      await pipelined.query('COMMIT');
      assert.equal((await listener.waitFor('pipelined.q')).pid, await backendPid(pipelined));

      await committed(outbox, 'sentinel.q');
      await listener.waitFor('sentinel.q');
      assert.deepEqual(listener.payloads(), ['wrapped.q', 'pipelined.q', 'sentinel.q']);
    } finally {
      client.release();
      await pipelined.end();
    }
  });

  test('the notifier connection killed: a warning, and the next wake-up reconnects', async (t) => {
    const { outbox, listener } = await setup(t, 'a_killed');
    await committed(outbox, 'first.q');
    const { pid } = await listener.waitFor('first.q');
    await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
    await waitFor(
      () =>
        newOutbox.logger.entries.some(
          (e) =>
            e.level === 'warn' &&
            e.message.startsWith('wake-up NOTIFY connection lost') &&
            e.fields.channel === 'txoutbox.a_killed',
        ),
      { what: 'a warning about the lost notifier connection' },
    );
    await committed(outbox, 'after-reconnect.q');
    const woke = await listener.waitFor('after-reconnect.q');
    assert.notEqual(woke.pid, pid, 'a new notifier connection');
    assert.equal(await connected(pid), false);
  });

  test('a notifier that cannot connect logs a warning without the password; publishing is unaffected', async (t) => {
    await setup(t, 'a_badconn');
    const url = new URL(db.url);
    url.password = 'sekrit-do-not-log';
    url.pathname = '/no_such_database_for_the_notifier';
    const outbox = newOutbox({ connectionString: url.toString(), table: 'a_badconn' });
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await outbox.publish(client, 'unheard.q', 'x');
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    await waitFor(
      () =>
        newOutbox.logger.entries.some(
          (e) => e.message.startsWith('wake-up NOTIFY failed') && e.fields.channel === 'txoutbox.a_badconn',
        ),
      { what: 'a warning about the failed NOTIFY' },
    );
    assert.equal(await rows('a_badconn', 'unheard.q'), 1, 'the row committed: polling delivers it');
    assert.doesNotMatch(JSON.stringify(newOutbox.logger.entries), /sekrit/);
  });

  test('stop() closes the notifier connection', async (t) => {
    const { outbox, listener } = await setup(t, 'a_stop');
    const publisherPid = await committed(outbox, 'before.q');
    const { pid } = await listener.waitFor('before.q');
    assert.notEqual(pid, publisherPid);
    assert.equal(await connected(pid), true);
    await outbox.stop();
    await waitFor(async () => !(await connected(pid)), { what: 'the notifier connection gone from pg_stat_activity' });
  });

  test('an idle notifier connection does not keep the process alive', async () => {
    // A child process publishes (after-commit), ends its own pool and never calls outbox.stop().
    const index = pathToFileURL(`${process.cwd()}/src/index.ts`).href;
    const script = `
      import pg from 'pg';
      const { Outbox } = await import(${JSON.stringify(index)});
      const quiet = () => undefined;
      const pool = new pg.Pool({ connectionString: process.argv[1] });
      const outbox = new Outbox({ pool, table: 'a_exit', logger: { debug: quiet, info: quiet, warn: console.error, error: console.error } });
      await outbox.migrate();
      const listener = new pg.Client({ connectionString: process.argv[1] });
      await listener.connect();
      await listener.query('LISTEN "txoutbox.a_exit"');
      const woke = new Promise((resolve) => listener.on('notification', resolve));
      const client = await pool.connect();
      await client.query('BEGIN');
      await outbox.publish(client, 'exit.q', 'x');
      await client.query('COMMIT');
      client.release();
      await woke;
      await listener.end();
      await pool.end();
      console.log('done');
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, db.url], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let doneAt: number | undefined;
    child.stdout.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('done')) doneAt = performance.now();
    });
    // A kept-alive child would never exit on its own: end it, and fail, after 15 s.
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    clearTimeout(killer);
    const exitedAt = performance.now();
    assert.ok(doneAt !== undefined, 'the child published and was woken');
    assert.equal(code, 0, 'the child exited on its own');
    assert.ok(exitedAt - doneAt < 3_000, `the process lingered ${Math.round(exitedAt - doneAt)} ms`);
  });

  test("a bad notify option is an InvalidOptionError naming 'notify'", () => {
    for (const notify of ['sometimes', true, 1, null]) {
      assert.throws(
        () => new Outbox({ pool: db.pool, notify } as never),
        (error: unknown) =>
          error instanceof InvalidOptionError &&
          error.option === 'notify' &&
          /^notify: expected 'after-commit' or 'in-transaction'/.test(error.message),
      );
    }
  });
});

describe('subscriptions in the publishing process', () => {
  const SLOW_POLL = { minPollIntervalMs: 60_000, maxPollIntervalMs: 60_000 } as const;

  test('are woken at once, without LISTEN: with listen: false only a local wake-up (or a 60 s poll) could start the handler', async (t) => {
    const log = new EventLog();
    const outbox = newOutbox({ pool: db.pool, table: 'a_local', listen: false, recorder: log.recorder });
    await outbox.migrate();
    const handled: string[] = [];
    outbox.subscribe('local.q', (message) => void handled.push(String(message.body)), SLOW_POLL);
    outbox.start();
    t.after(() => outbox.stop());
    await log.waitFor('fetched'); // the start-up fetch found nothing; the next poll is a minute away
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await outbox.publish(client, 'local.q', 'in a transaction');
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(handled, [], 'nothing before COMMIT');
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    await waitFor(() => handled.length === 1, { what: 'the committed row handled' });
    await outbox.publish(db.pool, 'local.q', 'autocommit', { autocommit: true });
    await waitFor(() => handled.length === 2, { what: 'the autocommit row handled' });
    assert.deepEqual(handled, ['in a transaction', 'autocommit']);
  });

  test('a rolled-back publish wakes nobody locally either', async (t) => {
    const log = new EventLog();
    const outbox = newOutbox({ pool: db.pool, table: 'a_local_rb', listen: false, recorder: log.recorder });
    await outbox.migrate();
    outbox.subscribe('rb.q', () => undefined, SLOW_POLL);
    outbox.subscribe('sentinel.q', () => undefined, { ...SLOW_POLL, name: 'sentinel' });
    outbox.start();
    t.after(() => outbox.stop());
    await log.waitFor('fetched', 2);
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await outbox.publish(client, 'rb.q', 'x');
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    // A sentinel through another queue of the same Outbox proves wake-ups were flowing meanwhile.
    await outbox.publish(db.pool, 'sentinel.q', 'x', { autocommit: true });
    await waitFor(() => log.of('acked').length === 1, { what: 'the sentinel handled' });
    assert.equal(log.of('fetched').filter((e) => e.queue === 'rb.q').length, 1, 'rb.q: only the start-up fetch');
  });

  test("other processes still get the NOTIFY: a second Outbox on the table, woken by the first one's notifier, while its own is skipped", async (t) => {
    const publisher = newOutbox({ pool: db.pool, table: 'a_remote' });
    await publisher.migrate();
    const log = new EventLog();
    const consumer = newOutbox({ pool: db.pool, table: 'a_remote', recorder: log.recorder });
    const handled: string[] = [];
    consumer.subscribe('remote.q', (message) => void handled.push(String(message.body)), SLOW_POLL);
    consumer.start();
    t.after(() => consumer.stop());
    t.after(() => publisher.stop());
    await waitFor(
      async () =>
        (
          await db.pool.query('SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query = $1', [
            'LISTEN "txoutbox.a_remote"',
          ])
        ).rowCount === 1,
      { what: 'the consumer listening' },
    );
    // The consumer publishes too: its own notifier connects (its pid is now skipped by its LISTEN)
    // and its subscription is woken locally.
    await consumer.publish(db.pool, 'remote.q', 'own', { autocommit: true });
    await waitFor(() => handled.includes('own'), { what: "the consumer's own row" });
    // Settled: the fetch after the row came back empty, so the loop sleeps for the 60 s poll and
    // only a NOTIFY from the publisher's notifier can start the next handler.
    await waitFor(() => log.of('fetched').at(-1)?.count === 0, { what: 'the consumer idle' });
    await committed(publisher, 'remote.q');
    await waitFor(() => handled.includes('x'), { what: "the publisher's row, through its NOTIFY" });
    assert.deepEqual(handled, ['own', 'x']);
  });
});
