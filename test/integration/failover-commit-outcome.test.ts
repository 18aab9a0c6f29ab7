import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import pg from 'pg';

import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../src/embedded/index.js';
import { ConstantRetry, Outbox, type SubscribeOptions } from '../../src/index.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { observedOutbox } from '../support/proxied-outbox.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

/**
 * A failover in the middle of a COMMIT. The primary goes away with the COMMIT unsent, so the
 * transaction never commits anywhere; the client's COMMIT goes unanswered, and it asks the new
 * primary (the promoted standby, which has the rows as they were) what became of the transaction's
 * id. The standby never saw that transaction, and it has handed out transaction ids of its own
 * since: the same id may name one of its transactions, committed. Reporting the batch's acks then
 * counts as handled rows that run again (architecture/row-lock-mode.md). The two servers are two
 * fresh embedded PostgreSQLs with the same rows; the standby is put ahead in transaction ids, as
 * a busy new primary soon is (real streaming replication needs pg_basebackup, which the embedded
 * binaries do not ship).
 */
describe('a COMMIT lost in a failover, whose transaction id the new primary gave to another', () => {
  let oldPrimary: EmbeddedPostgres;
  let newPrimary: EmbeddedPostgres;
  const pools: pg.Pool[] = [];

  before(async () => {
    const settings = { fsync: 'off' };
    [oldPrimary, newPrimary] = await Promise.all([startEmbeddedPostgres({ settings }), startEmbeddedPostgres({ settings })]);
    // A standby has its primary's roles: the same password reaches both.
    const admin = new pg.Client({ connectionString: newPrimary.connectionString });
    await admin.connect();
    try {
      const password = decodeURIComponent(new URL(oldPrimary.connectionString).password);
      await admin.query(`ALTER ROLE postgres PASSWORD ${pg.escapeLiteral(password)}`);
    } finally {
      await admin.end();
    }
  });

  after(async () => {
    await Promise.all(pools.map((pool) => pool.end()));
    await Promise.all([oldPrimary?.stop(), newPrimary?.stop()]);
  });

  /** Either server's connection string, with the old primary's password (the new one's since before()). */
  function poolUrl(server: EmbeddedPostgres): string {
    const url = new URL(oldPrimary.connectionString);
    url.port = String(server.port);
    return url.toString();
  }

  /** A pool on either server, ended after the tests. */
  function poolOn(server: EmbeddedPostgres): pg.Pool {
    const pool = new pg.Pool({ connectionString: poolUrl(server), max: 2 });
    // end() resolves before its connections have closed, and the servers stop right after: a
    // connection still closing then hears the shutdown, which unheard would crash the file.
    pool.on('error', () => undefined);
    pools.push(pool);
    return pool;
  }

  /**
   * `table` migrated on both servers with the same `bodies` published on `queue` (the same ids), the
   * `ahead` server's transaction ids put 2,000 ahead of the other's (committed subtransactions, so
   * each id in between is 'committed'), and an Outbox through a proxy to the old primary (`link`).
   */
  async function twoPrimaries(table: string, queue: string, bodies: readonly unknown[], ahead: 'new' | 'old' = 'new') {
    const [before, after] = [poolOn(oldPrimary), poolOn(newPrimary)];
    const ids: string[][] = [];
    for (const pool of [before, after]) {
      const outbox = new Outbox({ pool, table, logger: newOutbox.logger });
      await outbox.migrate();
      ids.push(await publishCommitted(outbox, pool, queue, bodies));
      // Its wake-up notifier's connection closed: the servers stop under it after the tests.
      await outbox.stop();
    }
    assert.deepEqual(ids[0], ids[1], 'the same rows on both');
    const [advanced, other] = ahead === 'new' ? [after, before] : [before, after];
    // The servers are shared by the tests: ahead of the other's ids as they are now.
    const [now, otherNow] = [await currentXid(advanced), await currentXid(other)];
    await advanced.query(`CREATE TABLE ${table}_ids (n int)`);
    await advanced.query(
      `DO $$ BEGIN FOR i IN 1..${Math.max(0, otherNow - now) + 2000} LOOP BEGIN INSERT INTO ${table}_ids VALUES (i); EXCEPTION WHEN OTHERS THEN NULL; END; END LOOP; END $$`,
    );
    const link = await TcpProxy.start(oldPrimary.port);
    db.onCleanup(() => link.close());
    return { ...observedOutbox(newOutbox, link.via(oldPrimary.connectionString), table), link, ids: ids[0] ?? [], before, after };
  }

  /** A new transaction id of `db`'s server (each call takes one). */
  async function currentXid(db: pg.Pool | pg.Client): Promise<number> {
    const { rows } = await db.query<{ id: string }>('SELECT pg_current_xact_id()::text AS id');
    return Number(rows[0]?.id);
  }

  /** The transaction ids named by the entries logged from entry `since` of the file's logger on whose message matches `pattern`. */
  const xidsLogged = (since: number, pattern: RegExp): string[] =>
    newOutbox.logger.entries
      .slice(since)
      .filter((entry) => pattern.test(entry.message))
      .map((entry) => String(entry.fields.xid));

  /**
   * `bodies` on both servers, one subscription (`options`) on `table`'s queue through the proxy, and
   * a failover when the subscription sends `marker` after the last row's first run began; resolves
   * once every row was handled on the new primary and every `ctx.written` settled. `handled`: runs
   * per id. `failFirst`: each row's first run throws (a retry under the default ack policy).
   */
  async function runsTwice(
    table: string,
    options: SubscribeOptions,
    bodies: readonly unknown[],
    marker: string,
    failFirst = false,
  ) {
    const queue = table.replaceAll('_', '-');
    const run = await twoPrimaries(table, queue, bodies);
    const handled = new Map<string, number>();
    run.outbox.subscribe(
      queue,
      (message) => {
        handled.set(message.id, (handled.get(message.id) ?? 0) + 1);
        const first = handled.get(message.id) === 1;
        if (handled.size === bodies.length && first) run.link.failOverAt(marker, newPrimary.port);
        if (failFirst && first) throw new Error('retry me');
      },
      { ...options, ...FAST_POLL },
    );
    run.outbox.start();
    await waitFor(async () => (await remaining(run.after, queue, table)) === 0, {
      what: 'the rows handled on the new primary',
      timeoutMs: 20_000,
    });
    await waitFor(() => run.writes.length === bodies.length * 2, { what: 'every ctx.written settled', timeoutMs: 20_000 });
    await run.outbox.stop();
    return { ...run, handled };
  }

  test('row-lock: the batch checks its rows; written as it left them or not, it reports a rollback, and its rows run again', async () => {
    const since = newOutbox.logger.entries.length;
    // The acks' DELETE and the COMMIT leave in one message, with the named rl_commit.
    const run = await runsTwice('fo_row_lock', { lease: 'row-lock', concurrency: 1 }, [1, 2, 3], 'rl_commit');
    assert.deepEqual(
      run.ids.map((id) => run.handled.get(id)),
      [2, 2, 2],
      'every row ran again on the new primary',
    );
    assert.deepEqual(
      [...run.writes].sort(),
      ['failed', 'failed', 'failed', 'written', 'written', 'written'],
      'the lost batch reports its writes failed, the one on the new primary written',
    );
    assert.equal(run.log.of('acked').length, 3, 'acks only from the batch that committed');
    // The scenario is the one described: the new primary says 'committed' for the lost batch's id.
    const [xid] = xidsLogged(since, /rolled back/);
    const { rows } = await run.after.query<{ status: string }>('SELECT pg_xact_status($1::xid8) AS status', [xid]);
    assert.equal(rows[0]?.status, 'committed');
  });

  /**
   * The rows alone cannot tell a lost transaction from a later run that ended them: both leave them
   * gone. Here the lost transaction's id is in progress on the new primary (given to a transaction
   * the test holds open) while its rows are claimed again and acked there; then that transaction
   * commits, and the server says 'committed' of the id, the rows gone. The subscription claimed them
   * as the lost transaction had (the same attempts_count): it did not commit. `bodies` on both
   * servers, one subscription (`options`) through the proxy, failing over when it sends `marker`
   * in the last row's first run; resolves once every ctx.written settled.
   */
  async function rerunWhileAsked(table: string, options: SubscribeOptions, bodies: readonly unknown[], marker: string) {
    const queue = table.replaceAll('_', '-');
    const run = await twoPrimaries(table, queue, bodies, 'old');
    const held = new pg.Client({ connectionString: poolUrl(newPrimary) });
    // Errors unheard would crash the file when the servers stop: it is ended in the test.
    held.on('error', () => undefined);
    await held.connect();
    let lostXid: string | undefined;
    const handled = new Map<string, number>();
    run.outbox.subscribe(
      queue,
      async (message) => {
        handled.set(message.id, (handled.get(message.id) ?? 0) + 1);
        if (handled.size !== bodies.length || lostXid !== undefined) return;
        // The transaction's id, held by its backend on the old primary (the newest: earlier tests'
        // lost transactions are still open there, their connections dropped half-open).
        const { rows } = await run.before.query<{ xid: string }>(
          'SELECT backend_xid::text AS xid FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() ORDER BY xact_start DESC LIMIT 1',
        );
        lostXid = rows[0]?.xid;
        assert.ok(lostXid !== undefined, 'a transaction holds an id');
        // The new primary hands out ids up to the one before it, then gives it to a transaction left open.
        while ((await currentXid(held)) < Number(lostXid) - 1);
        await held.query('BEGIN');
        assert.equal(await currentXid(held), Number(lostXid), 'the new primary gave the lost id to the open transaction');
        run.link.failOverAt(marker, newPrimary.port);
      },
      { ...options, ...FAST_POLL },
    );
    run.outbox.start();
    await waitFor(async () => (await remaining(run.after, queue, table)) === 0, {
      what: 'the rows handled again on the new primary',
      timeoutMs: 20_000,
    });
    await held.query('COMMIT');
    await held.end();
    await waitFor(() => run.writes.length === bodies.length * 2, { what: 'every ctx.written settled', timeoutMs: 20_000 });
    await run.outbox.stop();
    const { rows } = await run.after.query<{ status: string }>('SELECT pg_xact_status($1::xid8) AS status', [lostXid]);
    assert.equal(rows[0]?.status, 'committed', "the server says 'committed' of the lost transaction's id");
    return { ...run, handled };
  }

  test('row-lock: its rows run again and end on the new primary while the server cannot say yet; that claim tells the batch it did not commit', async () => {
    const run = await rerunWhileAsked('fo_rl_rerun', { lease: 'row-lock', concurrency: 1 }, [1, 2, 3], 'rl_commit');
    assert.deepEqual(
      run.ids.map((id) => run.handled.get(id)),
      [2, 2, 2],
    );
    assert.deepEqual(
      [...run.writes].sort(),
      ['failed', 'failed', 'failed', 'written', 'written', 'written'],
      'the lost batch reports its writes failed, the one on the new primary written',
    );
    assert.equal(run.log.of('acked').length, 3, 'acks only from the batch that committed');
  });

  /** The lost write's report and the rest, from `writes` (the lost one is the only one not 'written'). */
  function lostAndOthers(writes: readonly string[]): { lost: string | undefined; others: string[] } {
    const [lost, ...others] = [...writes].sort((a, b) => Number(a === 'written') - Number(b === 'written'));
    return { lost, others };
  }

  /** One row, run again on the new primary: its lost write reported as one of `lost`, the second run acked and 'written'. */
  function ranAgainOnce(run: Awaited<ReturnType<typeof runsTwice>>, lost: readonly string[]): void {
    assert.deepEqual(
      run.ids.map((id) => run.handled.get(id)),
      [2],
    );
    const reported = lostAndOthers(run.writes);
    assert.ok(lost.includes(String(reported.lost)), `the lost write reports ${String(reported.lost)}`);
    assert.deepEqual(reported.others, ['written']);
    assert.equal(run.log.of('acked').length, 1);
  }

  test('transactional: the ack is checked against its row; not deleted, it reports failed, and the row runs again', async () => {
    // The delivery's ack DELETE is answered (it gives the transaction's id), its COMMIT is not sent.
    const run = await runsTwice('fo_transactional', { transactional: true }, ['x'], 'COMMIT');
    // Not landed: 'failed' once the server's answer is checked, or 'lease_lost' when the lease's
    // renewal, on the new primary (which never saw the claim), found it gone first.
    ranAgainOnce(run, ['failed', 'lease_lost']);
  });

  test('transactional: its row runs again and ends on the new primary while the server cannot say yet; that claim tells the run it did not commit', async () => {
    const run = await rerunWhileAsked('fo_tx_rerun', { transactional: true, concurrency: 2 }, ['x'], 'COMMIT');
    // Not landed: 'failed', or 'lease_lost' when the lease's renewal found the row re-leased first.
    ranAgainOnce(run, ['failed', 'lease_lost']);
  });

  test("token lease: an ack DELETE whose answer was lost, retried on the new primary, finds the row there: 'lease_lost', not 'deleted'", async () => {
    const run = await runsTwice('fo_token_ack', {}, ['x'], 'ack_missed');
    // 'failed' only if every try of the ack drew a pooled connection the failover left dead.
    ranAgainOnce(run, ['lease_lost', 'failed']);
  });

  test('token lease: a retry UPDATE whose answer was lost is checked against the row, not its lease: reported failed', async () => {
    const run = await runsTwice(
      'fo_token_retry',
      { retry: new ConstantRetry({ delayMs: 1, maxAttempts: 5 }) },
      ['x'],
      'retry',
      true,
    );
    assert.deepEqual(
      run.ids.map((id) => run.handled.get(id)),
      [2],
    );
    assert.deepEqual(lostAndOthers(run.writes), { lost: 'failed', others: ['written'] });
    assert.equal(run.log.of('nacked_retried').length, 0, 'no retry landed');
  });

  test('no failover: an ack DELETE still committing when its retry began (a slow flush) is reported deleted, as before', async () => {
    // The check must not take a slow commit for another holder's row: the retry's snapshot, taken
    // while the first DELETE was still committing, still has the row, under this lease's token.
    // A deferred trigger holds the first DELETE's commit 1.5 s: past queryTimeoutMs (1 s), so the
    // ack is retried ~100 ms later, and that DELETE waits for the first one's and skips the row.
    const table = 'fo_slow_commit';
    const queue = 'fo-slow-commit';
    const pool = poolOn(oldPrimary);
    const setup = new Outbox({ pool, table, logger: newOutbox.logger });
    await setup.migrate();
    await pool.query(`CREATE FUNCTION ${table}_slow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep(1.5); RETURN NULL; END $$`);
    await pool.query(`CREATE CONSTRAINT TRIGGER ${table}_slow AFTER DELETE ON ${table}
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${table}_slow()`);
    await publishCommitted(setup, pool, queue, ['x']);
    await setup.stop();
    const { outbox, log, writes } = observedOutbox(newOutbox, oldPrimary.connectionString, table);
    let runs = 0;
    outbox.subscribe(
      queue,
      () => {
        runs += 1;
      },
      FAST_POLL,
    );
    outbox.start();
    await waitFor(() => writes.length === 1, { what: 'ctx.written settled', timeoutMs: 15_000 });
    await outbox.stop();
    assert.deepEqual(writes, ['written']);
    assert.equal(log.of('acked').length, 1);
    assert.equal(log.of('lease_lost').length, 0);
    assert.equal(runs, 1);
    assert.equal(await remaining(pool, queue, table), 0);
    assert.ok(
      newOutbox.logger.messages('warn').some((message) => /ack DELETE failed; retrying/.test(message)),
      'the first try timed out, and the ack was retried',
    );
  });
});
