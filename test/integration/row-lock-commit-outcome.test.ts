import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { threeRowsCut } from '../support/proxied-outbox.js';
import { remaining } from '../support/publish.js';
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
});
