import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ClaimDelayPool } from '../support/claim-delay-pool.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { migratedThroughPool, observedOutbox, proxyFor, threeRowsCut } from '../support/proxied-outbox.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import type { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

/**
 * Three rows in one row-lock batch through a proxy; `cut(link)` runs in the last row's first run,
 * so the batch's acks and COMMIT are the next statements it sends. `handled`: runs per id.
 */
async function batchCut(table: string, cut: (link: TcpProxy) => void, leaseTtlMs?: number) {
  const since = newOutbox.logger.entries.length;
  const { rows } = await db.pool.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid');
  const xidBefore = rows[0]?.xid;
  const run = await threeRowsCut(
    db,
    newOutbox,
    table,
    { lease: 'row-lock', concurrency: 1, ...(leaseTtlMs === undefined ? {} : { leaseTtlMs }), ...FAST_POLL },
    cut,
  );
  return { ...run, since, xidBefore };
}

/** The rollbacks logged from entry `since` of the file's logger on (one test's). */
const rollbacksLogged = (since: number): string[] =>
  newOutbox.logger.entries
    .slice(since)
    .filter((entry) => entry.level === 'error' && /rolled back/.test(entry.message))
    .map((entry) => entry.message);

/**
 * A row-lock batch's COMMIT whose answer never arrives (a client-side timeout, a link lost after
 * the COMMIT left) may have landed or not. Reporting it as rolled back when it landed loses the
 * batch's acks from every number (events, `ctx.written`, the queue's throughput), and tells the
 * operator its rows will run again when they will not. The batch asks the server what became of
 * its transaction (pg_xact_status) and reports that (architecture/row-lock-mode.md).
 */
describe('row-lock: a COMMIT whose answer was lost', () => {
  test('landed: the batch reports its acks (events, ctx.written), and no row runs again', async () => {
    // The acks' DELETE and the COMMIT (the named rl_commit) leave next, and their answers are dropped.
    const run = await batchCut('rl_commit_lost', (link) => {
      link.muteAnswersAfter('rl_commit');
    });
    await waitFor(async () => (await remaining(db.pool, run.queue, 'rl_commit_lost')) === 0, { what: 'the COMMIT landed' });
    await run.log.waitFor('acked', 3, 15_000);
    await waitFor(() => run.writes.length === 3, { what: 'every ctx.written settled' });
    await run.outbox.stop();
    assert.deepEqual(run.writes, ['written', 'written', 'written']);
    assert.deepEqual(
      run.ids.map((id) => run.handled.get(id)),
      [1, 1, 1],
    );
    assert.deepEqual(rollbacksLogged(run.since), []);
    assert.ok(
      newOutbox.logger.messages('warn').some((message) => /answer was lost/.test(message) && /committed/.test(message)),
      `the lost answer is logged: ${JSON.stringify(newOutbox.logger.messages('warn'))}`,
    );
    // The id asked about is this batch's own transaction: assigned after the test began, committed.
    const warned = newOutbox.logger.entries.slice(run.since).find((entry) => /answer was lost/.test(entry.message));
    const xid = String(warned?.fields.xid);
    const { rows } = await db.pool.query<{ status: string; after: boolean }>(
      'SELECT pg_xact_status($1::xid8) AS status, $1::xid8 > $2::xid8 AS after',
      [xid, run.xidBefore],
    );
    assert.deepEqual(rows[0], { status: 'committed', after: true });
  });

  test('arrived late (the link froze, then thawed): the batch waits for the server to end its transaction, and reports the COMMIT', async () => {
    // The acks and the COMMIT wait in the proxy; the client gives up on them (queryTimeoutMs), and
    // the thaw passes them on: the COMMIT lands after the batch stopped waiting for it.
    const run = await batchCut('rl_commit_late', (link) => {
      link.freeze();
      setTimeout(() => {
        link.thaw();
      }, 3_000);
    });
    await run.log.waitFor('acked', 3, 15_000);
    await waitFor(() => run.writes.length === 3, { what: 'every ctx.written settled' });
    await run.outbox.stop();
    assert.deepEqual(run.writes, ['written', 'written', 'written']);
    assert.equal(await remaining(db.pool, run.queue, 'rl_commit_late'), 0);
    assert.deepEqual(
      run.ids.map((id) => run.handled.get(id)),
      [1, 1, 1],
    );
    assert.deepEqual(rollbacksLogged(run.since), []);
  });

  test('never arrived (half-open): once the server ended the transaction, the batch reports its rollback, and its rows run again', async () => {
    // What the client sends from now on is dropped: the COMMIT never reaches the server, which ends
    // the idle transaction after leaseTtlMs + 5 s (util/idle-bound.ts).
    const run = await batchCut('rl_commit_never', (link) => link.dropHalfOpen(), 1000);
    await waitFor(() => run.ids.every((id) => run.handled.get(id) === 2), { what: 'every row ran again', timeoutMs: 20_000 });
    await run.log.waitFor('acked', 3, 15_000);
    await waitFor(() => run.writes.length === 6, { what: 'every ctx.written settled' });
    await run.outbox.stop();
    // The first batch's are reported once the server ended its transaction, which may be after the next batch's.
    assert.deepEqual(
      [...run.writes].sort(),
      ['failed', 'failed', 'failed', 'written', 'written', 'written'],
      'the first batch reports its writes failed, the second written',
    );
    assert.equal(run.log.of('acked').length, 3, 'acks only from the batch that committed');
    assert.equal(rollbacksLogged(run.since).length, 1, 'the rollback is logged');
  });

  /**
   * Three rows in one row-lock batch whose acks and COMMIT land with their answers dropped, through a
   * pool that holds each pg_xact_status question `askMs`; resolves once the first question is on its
   * way, with the outbox (gracefulTimeoutMs `gracefulMs`) and what it reported.
   */
  async function askingSlowly(table: string, askMs: number, gracefulMs: number, stopAtCommit = false) {
    const queue = table.replaceAll('_', '-');
    await migratedThroughPool(db, newOutbox, table);
    const link = await proxyFor(db);
    let asked = 0;
    const pool = new ClaimDelayPool(
      { connectionString: link.via(db.url), max: 6 },
      () => {
        asked += 1;
        return new Promise((resolve) => setTimeout(resolve, askMs));
      },
      undefined,
      /xact_status/,
    );
    pool.on('error', () => undefined);
    db.onCleanup(() => pool.end());
    const { outbox, log, writes } = observedOutbox(newOutbox, pool, table, { gracefulTimeoutMs: gracefulMs });
    await publishCommitted(outbox, db.pool, queue, [1, 2, 3]);
    const runs = { count: 0 };
    let stopped: Promise<void> | undefined;
    outbox.subscribe(
      queue,
      () => {
        runs.count += 1;
        if (runs.count !== 3) return;
        // The acks and the COMMIT (the named rl_commit) leave next: they land, their answers are dropped.
        link.muteAnswersAfter('rl_commit');
        if (stopAtCommit) stopped = outbox.stop();
      },
      { lease: 'row-lock', concurrency: 1, ...FAST_POLL },
    );
    outbox.start();
    await waitFor(() => asked > 0 || stopped !== undefined, {
      what: 'the batch asking the server about its COMMIT',
      timeoutMs: 10_000,
    });
    return { outbox, log, writes, runs, queue, stopped };
  }

  test("stop() right after: it waits for the server's answer within its budget, and the batch is reported before stop() resolves", async () => {
    // The question was asked once more at most once stop() began, after a pause of up to 2 s, and
    // stop() did not wait for it: what it learnt was reported after stop() resolved, or (the pool
    // closed under it by an Outbox that owns it) not at all, and a batch that had committed was
    // reported as unknown. Here each question takes 1.5 s, and stop() begins as the first leaves.
    const run = await askingSlowly('rl_commit_stop', 1_500, 5_000);
    await run.outbox.stop();
    assert.deepEqual(run.writes, ['written', 'written', 'written'], 'reported before stop() resolved');
    assert.equal(run.log.of('acked').length, 3);
    assert.equal(run.runs.count, 3);
    assert.equal(await remaining(db.pool, run.queue, 'rl_commit_stop'), 0);
  });

  test('stop() begun as the COMMIT leaves: its answer lost, the batch asks the server, and is reported before stop() resolves', async () => {
    // A COMMIT whose answer was lost while stopping was not asked about: its acks were reported
    // 'failed', the log saying its rows would run again unless it had landed (it had).
    const run = await askingSlowly('rl_commit_stopping', 200, 5_000, true);
    await run.stopped;
    assert.deepEqual(run.writes, ['written', 'written', 'written'], 'reported before stop() resolved');
    assert.equal(run.log.of('acked').length, 3);
    assert.equal(await remaining(db.pool, run.queue, 'rl_commit_stopping'), 0);
  });

  test('stop() waits for that answer no longer than its graceful budget', async () => {
    const run = await askingSlowly('rl_commit_stop_bound', 10_000, 1_000);
    const began = performance.now();
    await run.outbox.stop();
    const tookMs = performance.now() - began;
    assert.ok(tookMs < 3_000, `stop() took ${Math.round(tookMs)} ms`);
    assert.ok(
      newOutbox.logger.messages('warn').some((message) => /stop\(\) stopped waiting for the server's answer/.test(message)),
      'says it stopped waiting',
    );
  });
});
