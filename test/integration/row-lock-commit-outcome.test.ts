import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { type Middleware, Outbox, type OutcomeWrite } from '../../src/index.js';
import { useTestDatabase } from '../support/database.js';
import { EventLog } from '../support/events.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

async function migrated(table: string): Promise<void> {
  await new Outbox({ pool: db.pool, table, logger: newOutbox.logger }).migrate();
}

async function proxy(): Promise<TcpProxy> {
  const started = await TcpProxy.start(Number(new URL(db.url).port));
  db.onCleanup(() => started.close());
  return started;
}

/** Keeps what each delivery's `ctx.written` settled with. */
function writtenProbe(): { middleware: Middleware; writes: OutcomeWrite[] } {
  const writes: OutcomeWrite[] = [];
  return {
    writes,
    middleware: {
      name: 'written-probe',
      async consume(ctx, next) {
        await next();
        void ctx.written.then((write) => writes.push(write));
      },
    },
  };
}

/**
 * A row-lock batch's COMMIT whose answer never arrives (a client-side timeout, a link lost after
 * the COMMIT left) may have landed or not. Reporting it as rolled back when it landed loses the
 * batch's acks from every number (events, `ctx.written`, the queue's throughput), and tells the
 * operator its rows will run again when they will not. The batch asks the server what became of
 * its transaction (pg_xact_status) and reports that (architecture/row-lock-mode.md).
 */
describe('row-lock: a COMMIT whose answer was lost', () => {
  test('landed: the batch reports its acks (events, ctx.written), and no row runs again', async () => {
    const table = 'rl_commit_lost';
    await migrated(table);
    const link = await proxy();
    const log = new EventLog();
    const probe = writtenProbe();
    const outbox = newOutbox({
      connectionString: link.via(db.url),
      table,
      queryTimeoutMs: 1000,
      recorder: log.recorder,
      middlewares: [probe.middleware],
    });
    const handled = new Map<string, number>();
    outbox.subscribe(
      'commit-lost',
      (message) => {
        handled.set(message.id, (handled.get(message.id) ?? 0) + 1);
        // The batch's last handler: its acks' DELETE and the COMMIT leave next, and their answers are dropped.
        if (handled.size === 3 && handled.get(message.id) === 1) link.muteAnswers();
      },
      { lease: 'row-lock', concurrency: 1, ...FAST_POLL },
    );
    const ids = await publishCommitted(outbox, db.pool, 'commit-lost', [1, 2, 3]);
    outbox.start();
    await waitFor(async () => (await remaining(db.pool, 'commit-lost', table)) === 0, { what: 'the COMMIT landed' });
    await log.waitFor('acked', 3, 15_000);
    await waitFor(() => probe.writes.length === 3, { what: 'every ctx.written settled' });
    assert.deepEqual(probe.writes, ['written', 'written', 'written']);
    assert.deepEqual(
      ids.map((id) => handled.get(id)),
      [1, 1, 1],
    );
    const { logger } = newOutbox;
    assert.ok(
      !logger.messages('error').some((message) => /rolled back/.test(message)),
      `no rollback reported: ${JSON.stringify(logger.messages('error'))}`,
    );
    assert.ok(
      logger.messages('warn').some((message) => /answer was lost/.test(message) && /committed/.test(message)),
      `the lost answer is logged: ${JSON.stringify(logger.messages('warn'))}`,
    );
    await outbox.stop();
  });

  test('arrived late (the link froze, then thawed): the batch waits for the server to end its transaction, and reports the COMMIT', async () => {
    const table = 'rl_commit_late';
    await migrated(table);
    const link = await proxy();
    const log = new EventLog();
    const probe = writtenProbe();
    const outbox = newOutbox({
      connectionString: link.via(db.url),
      table,
      queryTimeoutMs: 1000,
      recorder: log.recorder,
      middlewares: [probe.middleware],
    });
    const handled = new Map<string, number>();
    outbox.subscribe(
      'commit-late',
      (message) => {
        handled.set(message.id, (handled.get(message.id) ?? 0) + 1);
        if (handled.size === 3 && handled.get(message.id) === 1) {
          // The acks and the COMMIT wait in the proxy; the client gives up on them (queryTimeoutMs),
          // and the thaw passes them on: the COMMIT lands after the batch stopped waiting for it.
          link.freeze();
          setTimeout(() => {
            link.thaw();
          }, 3_000);
        }
      },
      { lease: 'row-lock', concurrency: 1, ...FAST_POLL },
    );
    const ids = await publishCommitted(outbox, db.pool, 'commit-late', [1, 2, 3]);
    outbox.start();
    await log.waitFor('acked', 3, 15_000);
    await waitFor(() => probe.writes.length === 3, { what: 'every ctx.written settled' });
    assert.deepEqual(probe.writes, ['written', 'written', 'written']);
    assert.equal(await remaining(db.pool, 'commit-late', table), 0);
    assert.deepEqual(
      ids.map((id) => handled.get(id)),
      [1, 1, 1],
    );
    assert.ok(
      !newOutbox.logger.messages('error').some((message) => /rolled back/.test(message)),
      `no rollback reported: ${JSON.stringify(newOutbox.logger.messages('error'))}`,
    );
    await outbox.stop();
  });

  test('never arrived (half-open): once the server ended the transaction, the batch reports its rollback, and its rows run again', async () => {
    const table = 'rl_commit_never';
    await migrated(table);
    const link = await proxy();
    const log = new EventLog();
    const probe = writtenProbe();
    const outbox = newOutbox({
      connectionString: link.via(db.url),
      table,
      queryTimeoutMs: 1000,
      recorder: log.recorder,
      middlewares: [probe.middleware],
    });
    const handled = new Map<string, number>();
    outbox.subscribe(
      'commit-never',
      (message) => {
        handled.set(message.id, (handled.get(message.id) ?? 0) + 1);
        // What the client sends from now on is dropped: the COMMIT never reaches the server, which
        // ends the idle transaction after leaseTtlMs + 5 s (util/idle-bound.ts).
        if (handled.size === 3 && handled.get(message.id) === 1) link.dropHalfOpen();
      },
      { lease: 'row-lock', leaseTtlMs: 1000, concurrency: 1, ...FAST_POLL },
    );
    const ids = await publishCommitted(outbox, db.pool, 'commit-never', [1, 2, 3]);
    outbox.start();
    await waitFor(() => ids.every((id) => handled.get(id) === 2), { what: 'every row ran again', timeoutMs: 20_000 });
    await log.waitFor('acked', 3, 15_000);
    await waitFor(() => probe.writes.length === 6, { what: 'every ctx.written settled' });
    // The first batch's are reported once the server ended its transaction, which may be after the next batch's.
    assert.deepEqual(
      [...probe.writes].sort(),
      ['failed', 'failed', 'failed', 'written', 'written', 'written'],
      'the first batch reports its writes failed, the second written',
    );
    assert.equal(log.of('acked').length, 3, 'acks only from the batch that committed');
    assert.ok(
      newOutbox.logger.messages('error').some((message) => /rolled back/.test(message)),
      `the rollback is logged: ${JSON.stringify(newOutbox.logger.messages('error'))}`,
    );
    await outbox.stop();
  });
});
