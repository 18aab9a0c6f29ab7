import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { describe, test } from 'node:test';

import pg from 'pg';

import { type Handler, Outbox } from '../../src/index.js';
import { ClaimDelayPool } from '../support/claim-delay-pool.js';
import { useTestDatabase } from '../support/database.js';
import { EventLog } from '../support/events.js';
import { outboxFactory } from '../support/outboxes.js';
import { migratedThroughPool, proxyFor } from '../support/proxied-outbox.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import type { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

const migrated = (table: string): Promise<void> => migratedThroughPool(db, newOutbox, table);
const proxy = (): Promise<TcpProxy> => proxyFor(db);

/** How long `stop()` took, in ms. */
async function timedStop(outbox: Outbox): Promise<number> {
  const t0 = performance.now();
  await outbox.stop();
  return performance.now() - t0;
}

/**
 * A handler whose runs wait for `release()` (the first one says it started): the test cuts the
 * connection while a batch is mid-run. `handled`: how many runs of each id returned.
 */
function gatedHandler(): { handler: Handler; firstStarted: Promise<void>; release: () => void; handled: Map<string, number> } {
  let started!: () => void;
  const firstStarted = new Promise<void>((resolve) => (started = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const handled = new Map<string, number>();
  const handler: Handler = async (message) => {
    started();
    await released;
    handled.set(message.id, (handled.get(message.id) ?? 0) + 1);
  };
  return { handler, firstStarted, release, handled };
}

/**
 * Issue 13, items 6 and 7: stop() bounded by gracefulTimeoutMs (+ the 1 s close budget) whatever the
 * connections do, and a half-open connection never stalls the subscriber silently. The bounds
 * asserted are generous (this is about hangs, not speed).
 */
describe('connection faults: bounded stop, no silent stall', () => {
  test('stop() with a claim stuck behind a lock on an Outbox-owned pool ends within its budget', async () => {
    const table = 'cf_lock';
    await migrated(table);
    const outbox = newOutbox({ connectionString: db.url, table, gracefulTimeoutMs: 500 });
    outbox.subscribe('locked', () => undefined, FAST_POLL);
    const locker = await db.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      outbox.start();
      await waitFor(
        async () => {
          const { rows } = await db.pool.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%${table}%'`,
          );
          return (rows[0]?.n ?? 0) > 0;
        },
        { what: 'the claim waits for the lock' },
      );
      const tookMs = await timedStop(outbox);
      assert.ok(tookMs < 3000, `stop() took ${Math.round(tookMs)} ms for a 500 ms budget`);
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
    }
  });

  test('a claim given up on behind a lock is cancelled by the server (owned pool): it never leases rows later', async () => {
    const table = 'cf_cancel';
    await migrated(table);
    const setup = new Outbox({ pool: db.pool, table, logger: newOutbox.logger });
    await publishCommitted(setup, db.pool, 'cancel', [1, 2, 3, 4, 5]);
    const outbox = newOutbox({ connectionString: db.url, table, queryTimeoutMs: 300, gracefulTimeoutMs: 200 });
    outbox.subscribe('cancel', () => undefined, FAST_POLL);
    const locker = await db.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      outbox.start();
      await waitFor(
        () =>
          newOutbox.logger.entries.some(
            (e) => e.message.startsWith('claim failed') && /statement timeout/.test(String(e.fields.err)),
          ),
        {
          what: 'the claim cancelled by statement_timeout',
        },
      );
      await outbox.stop();
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
    }
    // Had the server kept the claim, it would have leased the rows as soon as the lock was gone.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const { rows } = await db.pool.query<{ leased: number; counted: number }>(
      `SELECT count(*) FILTER (WHERE acquired_token IS NOT NULL)::int AS leased, sum(deliveries_count)::int AS counted FROM ${table}`,
    );
    assert.deepEqual(rows[0], { leased: 0, counted: 0 });
  });

  for (const lease of ['token', 'row-lock'] as const) {
    const suffix = lease === 'token' ? '' : '_rl';
    // Designed: 500 ms + the 1 s close (+ 0.5 s for row-lock batches to commit); the hangs these
    // tests catch took 6 s to forever.
    const limitMs = lease === 'token' ? 3_000 : 5_000;

    test(`stop() while every connection goes to a server that never answers ends within its budget (lease: ${lease})`, async () => {
      const table = `cf_silent${suffix}`;
      await migrated(table);
      const silent = await proxy();
      silent.freeze(); // accepts connections and never answers: a frozen server, a partition
      const outbox = newOutbox({ connectionString: silent.via(db.url), table, gracefulTimeoutMs: 500 });
      outbox.subscribe('silent', () => undefined, { lease, ...FAST_POLL });
      outbox.start();
      // The pool's, then (no claim ever returns, so after the 1 s cap) the LISTEN connection's and the diagnostics'.
      await waitFor(() => silent.connections >= 2, { what: 'the pool and the LISTEN connection are connecting' });
      const tookMs = await timedStop(outbox);
      assert.ok(tookMs < limitMs, `stop() took ${Math.round(tookMs)} ms for a 500 ms budget`);
    });

    test(`stop() while statements hang on half-open connections ends within its budget (lease: ${lease})`, async () => {
      const table = `cf_halfopen_stop${suffix}`;
      await migrated(table);
      const link = await proxy();
      const outbox = newOutbox({ connectionString: link.via(db.url), table, gracefulTimeoutMs: 500 });
      outbox.subscribe('halfopen-stop', () => undefined, { lease, ...FAST_POLL });
      outbox.start();
      await waitFor(() => link.connections >= 2, { what: 'connected' });
      link.freeze();
      await new Promise((resolve) => setTimeout(resolve, 300)); // a poll is now waiting on a silent peer
      const tookMs = await timedStop(outbox);
      assert.ok(tookMs < limitMs, `stop() took ${Math.round(tookMs)} ms for a 500 ms budget`);
    });
  }

  test("row-lock: stop() while a batch's connection freezes mid-batch ends within its budget; no row is lost", async () => {
    // The batch's transaction holds its rows locked; its running handler finishes while the
    // connection is frozen, so its ack's DELETE and COMMIT cannot get through. stop() must not wait
    // for them (they would hang until queryTimeoutMs, 10 s). Every row ends handled and deleted, or
    // still in the table, unlocked.
    const table = 'cf_rowlock_midbatch';
    await migrated(table);
    const link = await proxy();
    const outbox = newOutbox({ connectionString: link.via(db.url), table, gracefulTimeoutMs: 500 });
    const { handler, firstStarted, release, handled } = gatedHandler();
    outbox.subscribe('midbatch', handler, { lease: 'row-lock', concurrency: 1, fetchBatchSize: 5, ...FAST_POLL });
    const ids = await publishCommitted(outbox, db.pool, 'midbatch', [1, 2, 3, 4, 5]);
    outbox.start();
    await firstStarted;
    link.freeze();
    release();
    const tookMs = await timedStop(outbox);
    // Designed: 500 ms + 0.5 s for the batch's COMMIT + the 1 s close; it took 11.5 s before.
    assert.ok(tookMs < 5_000, `stop() took ${Math.round(tookMs)} ms for a 500 ms budget`);
    // Thawed, the proxy passes on what the batch had sent (its COMMIT may land now) and the close:
    // the server ends the batch's session either way.
    link.thaw();
    await waitFor(
      async () => {
        const { rows } = await db.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM ${table} WHERE id NOT IN (SELECT id FROM ${table} FOR UPDATE SKIP LOCKED)`,
        );
        return rows[0]?.n === 0;
      },
      { what: "the batch's session ended: no row locked" },
    );
    const { rows } = await db.pool.query<{ id: string }>(`SELECT id::text AS id FROM ${table}`);
    const left = new Set(rows.map((row) => row.id));
    assert.ok(left.size >= 4, `the rows the batch never started are still there (${left.size} of 5)`);
    for (const id of ids) assert.ok(left.has(id) || handled.has(id), `row ${id}: still there, or handled before its delete`);
  });

  test('row-lock: a batch cut off half-open mid-batch does not keep its rows locked: the server ends it after leaseTtlMs + the margin, and they are handled', async () => {
    // The server never learns that the client went away (no FIN, no RST): without an idle bound on
    // the batch's transaction its rows would stay locked, invisible to every claim, until TCP
    // keepalive noticed (hours). Found by chaos half-open with a row-lock worker (20 rows stuck).
    const table = 'cf_rowlock_halfopen';
    await migrated(table);
    const link = await proxy();
    const outbox = newOutbox({ connectionString: link.via(db.url), table, queryTimeoutMs: 1000 });
    const { handler, firstStarted, release, handled } = gatedHandler();
    outbox.subscribe('rl-halfopen', handler, {
      lease: 'row-lock',
      leaseTtlMs: 1000,
      concurrency: 1,
      fetchBatchSize: 5,
      ...FAST_POLL,
    });
    const ids = await publishCommitted(outbox, db.pool, 'rl-halfopen', [1, 2, 3]);
    outbox.start();
    await firstStarted;
    const cutAt = performance.now();
    assert.ok(link.dropHalfOpen() >= 1);
    release();
    // leaseTtlMs (1 s) + IDLE_MARGIN_MS (5 s) after the batch's last statement, then a claim.
    await waitFor(async () => (await remaining(db.pool, 'rl-halfopen', table)) === 0, {
      what: 'every row handled and deleted on a new connection',
      timeoutMs: 20_000,
    });
    assert.ok(performance.now() - cutAt >= 5_000, 'the server waited out the idle bound, not less');
    // Each ran in the batch that was cut off (its COMMIT never arrived), then again in the next.
    for (const id of ids) assert.ok((handled.get(id) ?? 0) >= 2, `row ${id} ran ${handled.get(id) ?? 0} times`);
    await outbox.stop();
  });

  test('transactional: a delivery cut off half-open does not keep its row locked: the server ends it after leaseTtlMs + the margin, and it is delivered again', async () => {
    // The run's row lock is its lease (architecture/transactional-consume.md): the lease's end
    // closes the connection on the client's side only; the server would keep the lock, and the row
    // out of every claim's reach, until TCP keepalive noticed.
    const table = 'cf_tx_halfopen';
    await migrated(table);
    const link = await proxy();
    const outbox = newOutbox({ connectionString: link.via(db.url), table, queryTimeoutMs: 1000 });
    let started!: () => void;
    const firstStarted = new Promise<void>((resolve) => (started = resolve));
    const runs: number[] = [];
    outbox.subscribe(
      'tx-halfopen',
      async (message, ctx) => {
        runs.push(message.deliveriesCount);
        if (runs.length > 1) return;
        started();
        // Held until the lease's end aborts the run (its transaction is then closed on this side).
        await new Promise((resolve) => {
          ctx.signal.addEventListener('abort', resolve, { once: true });
        });
      },
      { transactional: true, leaseTtlMs: 1000, ...FAST_POLL },
    );
    await publishCommitted(outbox, db.pool, 'tx-halfopen', ['x']);
    outbox.start();
    await firstStarted;
    const cutAt = performance.now();
    assert.ok(link.dropHalfOpen() >= 1);
    await waitFor(async () => (await remaining(db.pool, 'tx-halfopen', table)) === 0, {
      what: 'the row delivered again on a new connection and acked',
      timeoutMs: 20_000,
    });
    assert.ok(performance.now() - cutAt >= 5_000, 'the server waited out the idle bound, not less');
    assert.deepEqual(runs, [1, 2]);
    await outbox.stop();
  });

  test('transactional: the idle bound is leaseTtlMs + 5 s without renewal; under renewal none, and TCP keepalive probes instead', async () => {
    const table = 'cf_tx_idle_bound';
    const SETTINGS = [
      'idle_in_transaction_session_timeout',
      'tcp_keepalives_idle',
      'tcp_keepalives_interval',
      'tcp_keepalives_count',
    ];
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table);
    const seen = new Map<string, string>();
    const handler: Handler = async (message, ctx) => {
      const { rows } = await ctx.client.query<{ bound: string }>(
        `SELECT concat_ws(' ', ${SETTINGS.map((name) => `current_setting('${name}')`).join(', ')}) AS bound`,
      );
      seen.set(message.queue, rows[0]?.bound ?? '');
    };
    outbox.subscribe('bounded', handler, { transactional: true, leaseTtlMs: 2_000, ...FAST_POLL });
    outbox.subscribe('renewed', handler, { transactional: true, leaseTtlMs: 2_000, leaseRenewIntervalMs: 500, ...FAST_POLL });
    outbox.start();
    await publishCommitted(outbox, db.pool, 'bounded', ['x']);
    await publishCommitted(outbox, db.pool, 'renewed', ['x']);
    await log.waitFor('acked', 2);
    await outbox.stop();
    // The idle bound, then the keepalive idle time (s), interval (s) and count; the bounded run keeps
    // the session's keepalive settings (the operating system's, here), whatever they are.
    // leaseTtlMs + max(5 s, leaseTtlMs) = 7 s. On a Unix socket (a DATABASE_URL may use one) the
    // server ignores keepalive settings and reports 0.
    const { rows } = await db.pool.query<{ unix: boolean }>('SELECT inet_client_addr() IS NULL AS unix');
    assert.match(seen.get('bounded') ?? '', /^7s /);
    assert.doesNotMatch(seen.get('bounded') ?? '', / 10 5 3$/);
    assert.equal(seen.get('renewed'), rows[0]?.unix === true ? '0 0 0 0' : '0 10 5 3');
  });

  test('connections dropped half-open: the claim fails after queryTimeoutMs, is logged, and claiming resumes on new connections', async () => {
    const table = 'cf_halfopen';
    await migrated(table);
    const link = await proxy();
    const pool = new pg.Pool({ connectionString: link.via(db.url), max: 4 });
    pool.on('error', () => undefined);
    db.onCleanup(() => pool.end().catch(() => undefined));
    const log = new EventLog();
    const outbox = newOutbox({ pool, table, queryTimeoutMs: 1000, recorder: log.recorder });
    const handled = new Set<string>();
    outbox.subscribe(
      'halfopen',
      (message) => {
        handled.add(message.id);
      },
      { ...FAST_POLL, maxPollIntervalMs: 50 },
    );
    outbox.start();
    await log.waitFor('fetched', 2); // connected and claiming
    const dropped = link.dropHalfOpen();
    assert.ok(dropped >= 2);
    // Published through the test's own pool: the subscriber's connections are the ones that died.
    const ids = await publishCommitted(outbox, db.pool, 'halfopen', [1, 2, 3, 4, 5]);
    await waitFor(() => handled.size === ids.length, { timeoutMs: 15_000, what: `all 5 handled (have ${handled.size})` });
    await waitFor(async () => (await remaining(db.pool, 'halfopen', table)) === 0, { what: 'their acks landed' });
    assert.ok(
      newOutbox.logger.entries.some((e) => e.level === 'error' && /timeout/i.test(String(e.fields.err))),
      'the stalled statement was reported, not silent',
    );
    assert.equal(await outbox.ping(), true, 'healthy again');
  });

  test('ping() is false while a claim hangs where no timeout reaches (3 × queryTimeoutMs), true once it returns', async () => {
    const table = 'cf_stall';
    await migrated(table);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    // Clients hold the claim statement before sending it: the loop waits in a place no statement
    // timeout covers (as a driver or proxy bug would make it).
    const pool = new ClaimDelayPool({ connectionString: db.url, max: 4 }, () => held);
    db.onCleanup(() => pool.end());
    const outbox = newOutbox({ pool, table, queryTimeoutMs: 200 });
    outbox.subscribe('stall', () => undefined, FAST_POLL);
    outbox.start();
    await waitFor(async () => !(await outbox.ping()), { what: 'ping() reports the stalled claim' });
    release();
    await waitFor(() => outbox.ping(), { what: 'ping() recovers once the claim returned' });
  });

  test('a pool passed in is warned about, once at start(), for each safeguard against a silent server it lacks', async () => {
    const table = 'cf_warn';
    await migrated(table);
    const lacking = new pg.Pool({ connectionString: db.url, max: 2 });
    const guarded = new pg.Pool({
      connectionString: db.url,
      max: 2,
      connectionTimeoutMillis: 5_000,
      statement_timeout: 10_000,
      keepAlive: true,
    });
    db.onCleanup(() => Promise.all([lacking.end(), guarded.end()]).then(() => undefined));
    const before = newOutbox.logger.entries.length; // the file's other tests pass pools of their own
    const warnings = (): string[] =>
      newOutbox.logger.entries
        .slice(before)
        .filter((e) => e.level === 'warn' && e.message.includes('the pool passed to the Outbox'))
        .map((e) => e.message);
    const publishOnly = newOutbox({ pool: lacking, table });
    await publishCommitted(publishOnly, db.pool, 'warn', ['x']);
    assert.equal(warnings().length, 0, 'a publish-only Outbox runs no statements of its own on the pool');
    const consumer = newOutbox({ pool: lacking, table });
    consumer.subscribe('warn', () => undefined, FAST_POLL);
    consumer.subscribe('warn-2', () => undefined, FAST_POLL);
    consumer.start();
    assert.equal(warnings().length, 1);
    for (const missing of ['connectionTimeoutMillis', 'statement_timeout', 'keepAlive'])
      assert.match(warnings()[0]!, new RegExp(missing));
    const fine = newOutbox({ pool: guarded, table });
    fine.subscribe('warn-3', () => undefined, FAST_POLL);
    fine.start();
    assert.equal(warnings().length, 1, 'a pool with all three is not warned about');
  });

  test('after stop(), an owned pool still connecting to a server that never answers does not keep the process alive', async () => {
    // Before: the pool's connect waited out its 10 s connect timeout (measured: exit 8.5 s after stop()).
    const script = `
      import net from 'node:net';
      import { Outbox } from './src/index.ts';
      import { silentLogger } from './src/util/logger.ts';
      const silent = net.createServer(() => undefined);
      silent.listen(0, '127.0.0.1', async () => {
        silent.unref();
        const outbox = new Outbox({ connectionString: 'postgres://app:pw@127.0.0.1:' + silent.address().port + '/db',
          logger: silentLogger, gracefulTimeoutMs: 200 });
        outbox.subscribe('q', () => undefined);
        outbox.start();
        await new Promise((resolve) => setTimeout(resolve, 300));
        await outbox.stop();
        console.log('stopped');
      });`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let stoppedAt = 0;
    child.stdout.on('data', (data: Buffer) => {
      output += data.toString();
      if (stoppedAt === 0 && output.includes('stopped')) stoppedAt = performance.now();
    });
    child.stderr.on('data', (data: Buffer) => (output += data.toString()));
    const exitedAt = await new Promise<number>((resolve) =>
      child.on('exit', () => {
        resolve(performance.now());
      }),
    );
    assert.ok(stoppedAt > 0, `the child stopped its Outbox (output: ${output.trim()})`);
    assert.ok(exitedAt - stoppedAt < 3000, `exited ${Math.round(exitedAt - stoppedAt)} ms after stop() resolved`);
  });
});
