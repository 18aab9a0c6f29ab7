import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';

import pg from 'pg';

import { DEFERRED_START_MAX_MS } from '../../src/subscriber/consumer-signals.js';
import { NotifyListener } from '../../src/subscriber/listener.js';
import { silentLogger } from '../../src/util/logger.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const HOUR = 3_600_000;

/**
 * The backend pid of the LISTEN connection for the outbox table `table`, once its LISTEN has been
 * answered (`idle`: the backend reports it after sending ReadyForQuery). A LISTEN still running is
 * not counted: terminated then, the listener's LISTEN fails before it ever listened, and its next
 * failure is rightly its second.
 */
async function listenerPid(table: string): Promise<number | undefined> {
  const { rows } = await db.pool.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = $1 AND state = 'idle'",
    [`LISTEN "txoutbox.${table}"`],
  );
  return rows.length === 1 ? rows[0]!.pid : undefined;
}

describe('the LISTEN connection reconnects', () => {
  test('its backend terminated five times: every reconnect comes after ~500 ms, the backoff does not grow', async () => {
    const table = 'l_flap';
    const { outbox } = await migratedOutbox(newOutbox, db.pool, table);
    outbox.subscribe('flap', () => undefined, { minPollIntervalMs: 60_000, maxPollIntervalMs: 60_000 });
    outbox.start();
    let pid: number | undefined;
    await waitFor(async () => (pid = await listenerPid(table)) !== undefined, { what: 'listener connected' });
    const reconnectMs: number[] = [];
    for (let kill = 0; kill < 5; kill += 1) {
      const killed = pid!;
      await db.pool.query('SELECT pg_terminate_backend($1)', [killed]);
      const t0 = performance.now();
      await waitFor(
        async () => {
          pid = await listenerPid(table);
          return pid !== undefined && pid !== killed;
        },
        { what: `listener back after kill ${kill + 1}`, timeoutMs: 20_000, intervalMs: 20 },
      );
      reconnectMs.push(performance.now() - t0);
    }
    // Without the reset the pauses would be 0.5, 1, 2, 4 and 8 s (±25 %).
    for (const [i, ms] of reconnectMs.entries()) {
      assert.ok(ms < 2_000, `reconnect ${i + 1} took ${Math.round(ms)} ms: ${reconnectMs.map(Math.round).join(', ')}`);
    }
    const attempts = newOutbox.logger.entries
      .filter((e) => e.message.startsWith('LISTEN connection failed') && e.fields.channel === `txoutbox.${table}`)
      .map((e) => e.fields.attempt);
    assert.deepEqual(attempts, [1, 1, 1, 1, 1], 'each failure is the first since a healthy connection');
  });

  test('a LISTEN connection that dies during its health-check wait leaves no timer behind: the process exits at once after stop()', async () => {
    // A child process: an Outbox with the default 30 s health-check interval kills its own LISTEN
    // backend, stops during the reconnect pause, and then should exit with nothing left to wait for.
    const index = pathToFileURL(`${process.cwd()}/src/index.ts`).href;
    const script = `
      import pg from 'pg';
      const { Outbox } = await import(${JSON.stringify(index)});
      let failed;
      const seen = new Promise((resolve) => (failed = resolve));
      const quiet = () => undefined;
      const logger = { debug: quiet, info: quiet, error: quiet, warn: (_f, message) => { if (message.startsWith('LISTEN connection failed')) failed(); } };
      const url = process.argv[1];
      const outbox = new Outbox({ connectionString: url, table: 'l_exit', logger });
      await outbox.migrate();
      outbox.subscribe('exit', () => undefined, { minPollIntervalMs: 60000, maxPollIntervalMs: 60000 });
      outbox.start();
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      for (;;) {
        const { rows } = await admin.query(
          "SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN \\"txoutbox.l_exit\\"'",
        );
        if (rows[0].n === 1) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await seen;
      // Into the reconnect pause (>= 375 ms), which has replaced the health-check wait as the sleeper.
      await new Promise((resolve) => setTimeout(resolve, 100));
      await outbox.stop();
      await admin.end();
      console.log('stopped');
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, db.url], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stoppedAt: number | undefined;
    child.stdout.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('stopped')) stoppedAt = performance.now();
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    const exitedAt = performance.now();
    assert.equal(code, 0);
    assert.ok(stoppedAt !== undefined, 'the child stopped its Outbox');
    const lingerMs = exitedAt - stoppedAt;
    assert.ok(lingerMs < 3_000, `the process lingered ${Math.round(lingerMs)} ms after stop()`);
  });
});

describe('the paused-queue read after each LISTEN', () => {
  test("behind a migration's lock on <t>_paused it gives up after 2 s, with a warning; the connection goes on listening", async () => {
    const table = 'l_locked';
    const { outbox } = await migratedOutbox(newOutbox, db.pool, table);
    const other = newOutbox({ pool: db.pool, table });
    const handled: unknown[] = [];
    outbox.subscribe('locked', (message) => void handled.push(message.body), {
      minPollIntervalMs: HOUR,
      maxPollIntervalMs: HOUR,
    });
    outbox.start();
    let pid: number | undefined;
    await waitFor(async () => (pid = await listenerPid(table)) !== undefined, { what: 'listener connected' });
    const locker = await db.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE ${table}_paused IN ACCESS EXCLUSIVE MODE`);
      await db.pool.query('SELECT pg_terminate_backend($1)', [pid]);
      await waitFor(() => newOutbox.logger.messages('warn').some((m) => m.startsWith('could not read which queues are paused')), {
        what: 'the read gave up',
      });
      // Still behind the lock: a read without its lock_timeout would still be waiting there, and
      // the LISTEN after it queued behind it.
      await waitFor(async () => (await listenerPid(table)) !== undefined, { what: 'listening again, the lock still held' });
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
    }
    await publishCommitted(other, db.pool, 'locked', ['x']);
    await waitFor(() => handled.length === 1, { what: 'a NOTIFY woke the hourly poller' });
  });
});

describe('when the LISTEN connection opens (until-first-wait.ts)', () => {
  test('not while the first claims find work: once a subscription first waits; then NOTIFY wakes it', async (t) => {
    const table = 'l_deferred';
    const { outbox } = await migratedOutbox(newOutbox, db.pool, table);
    const other = newOutbox({ pool: db.pool, table });
    await publishCommitted(other, db.pool, 'busy', [1, 2, 3]);
    let release!: () => void;
    const blocked = new Promise<void>((resolve) => (release = resolve));
    const handled: unknown[] = [];
    // An hourly poll: after the backlog only a NOTIFY can start a handler.
    outbox.subscribe(
      'busy',
      async (message) => {
        handled.push(message.body);
        if (handled.length === 1) await blocked;
      },
      { concurrency: 1, fetchBatchSize: 3, minPollIntervalMs: HOUR, maxPollIntervalMs: HOUR },
    );
    const startedAt = performance.now();
    outbox.start();
    await waitFor(() => handled.length === 1, { what: 'the first handler runs' });
    // Long enough for a LISTEN opened at start() to be there, shorter than the cap.
    await new Promise((resolve) => setTimeout(resolve, DEFERRED_START_MAX_MS / 2));
    const checkedAt = performance.now();
    const pid = await listenerPid(table);
    if (performance.now() - startedAt < DEFERRED_START_MAX_MS) {
      assert.equal(pid, undefined, 'no LISTEN connection while the subscription has work');
    } else {
      t.diagnostic(`inconclusive: the check came ${Math.round(checkedAt - startedAt)} ms after start(), past the cap`);
    }
    release();
    await waitFor(() => handled.length === 3, { what: 'the backlog drained' });
    await waitFor(async () => (await listenerPid(table)) !== undefined, { what: 'LISTEN once the subscription waits' });
    await publishCommitted(other, db.pool, 'busy', [4]);
    await waitFor(() => handled.length === 4, { what: 'a NOTIFY woke it' });
  });

  test(`a subscription that never waits still gets its LISTEN connection, ${DEFERRED_START_MAX_MS} ms after start()`, async () => {
    const table = 'l_capped';
    const { outbox } = await migratedOutbox(newOutbox, db.pool, table);
    await publishCommitted(outbox, db.pool, 'stuck', [1, 2]);
    let release!: () => void;
    const blocked = new Promise<void>((resolve) => (release = resolve));
    const handled: unknown[] = [];
    outbox.subscribe(
      'stuck',
      async (message) => {
        handled.push(message.body);
        await blocked;
      },
      { concurrency: 1, fetchBatchSize: 2, ...FAST_POLL },
    );
    outbox.start();
    await waitFor(async () => (await listenerPid(table)) !== undefined, { what: 'LISTEN after the cap' });
    assert.equal(handled.length, 1, 'the subscription was busy all along (one slot, held)');
    release();
  });
});

describe("the LISTEN connection skips its own Outbox's notifier", () => {
  test("notifications from the ownNotifierPid backend wake nobody (their subscriptions were woken locally); every other sender's do", async (t) => {
    const channel = 'txoutbox.l_own';
    const woken: (string | undefined)[] = [];
    const own = new pg.Client({ connectionString: db.url });
    const other = new pg.Client({ connectionString: db.url });
    await own.connect();
    await other.connect();
    const ownPid = (await own.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const listener = new NotifyListener({
      clientConfig: { connectionString: db.url },
      channel,
      logger: silentLogger,
      onWake: (queue) => void woken.push(queue),
      ownNotifierPid: () => ownPid,
    });
    listener.start();
    t.after(async () => {
      await listener.stop();
      await own.end();
      await other.end();
    });
    await waitFor(() => woken.includes(undefined), { what: 'listening (the wake-everyone after connecting)' });
    for (const [client, queue] of [
      [own, 'q1'],
      [other, 'q2'],
      [own, 'q3'],
      [other, 'q4'],
    ] as const) {
      await client.query('SELECT pg_notify($1, $2)', [channel, queue]);
    }
    // Notifications arrive in commit order: once q4 is here, q3 would have been too.
    await waitFor(() => woken.includes('q4'), { what: 'q4' });
    assert.deepEqual(
      woken.filter((queue) => queue !== undefined),
      ['q2', 'q4'],
    );
  });
});
