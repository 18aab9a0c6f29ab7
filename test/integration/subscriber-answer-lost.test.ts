import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { ConstantRetry } from '../../src/index.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { proxiedOutbox, threeRowsCut } from '../support/proxied-outbox.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

/** The failed outcome writes logged from entry `since` of the file's logger on (one test's). */
const failedWritesLogged = (since: number): string[] =>
  newOutbox.logger.entries
    .slice(since)
    .filter((entry) => entry.level === 'error' && /failed; the row keeps its lease/.test(entry.message))
    .map((entry) => entry.message);

/**
 * A statement of the outcome path that ran on the server and whose answer never came back
 * (queryTimeoutMs ran out, the connection was lost after it left) may have landed. Each test drops
 * one statement's answer at the proxy (muteAnswersAfter: the first connection to send its name,
 * in its Bind) and checks that what landed is reported as landed: events, `ctx.written`, no lost
 * lease, no failed write.
 */
describe('outcome writes whose answer was lost (the statement ran, its answer never came)', () => {
  /**
   * A token-mode ack's DELETE, retried, finds nothing: while the lease cannot have run out on the
   * server no other holder can have taken the rows, so the first try deleted them (acker.ts).
   */
  async function ackLost(table: string, leaseTtlMs: number) {
    // The acks leave together once the three handlers returned: that DELETE's answer is dropped.
    const { outbox, queue, log, writes, ids, handled } = await threeRowsCut(
      db,
      newOutbox,
      table,
      { leaseTtlMs, ...FAST_POLL },
      (link) => {
        link.muteAnswersAfter('ack_missed');
      },
    );
    await waitFor(async () => (await remaining(db.pool, queue, table)) === 0, { what: 'the first DELETE landed' });
    await waitFor(() => writes.length === 3, { what: 'every ctx.written settled', timeoutMs: 15_000 });
    await outbox.stop();
    assert.deepEqual(
      ids.map((id) => handled.get(id)),
      [1, 1, 1],
    );
    return { log, writes };
  }

  test('an ack within the lease: reported as acked (events, ctx.written), not as a lost lease', async () => {
    const { log, writes } = await ackLost('ack_lost_in_lease', 30_000);
    assert.deepEqual(writes, ['written', 'written', 'written']);
    assert.equal(log.of('acked').length, 3);
    assert.equal(log.of('lease_lost').length, 0);
    assert.ok(
      newOutbox.logger.messages('warn').some((message) => /ack DELETE failed; retrying/.test(message)),
      'the failed attempt is logged',
    );
  });

  test('an ack past the point where the lease may have run out: a lost lease, as the retry cannot tell', async () => {
    // leaseTtlMs 1.5 s from before the claim was sent; the ack's first try gives up after
    // queryTimeoutMs + 1 s (2 s), so the retry answers past the point where another holder could
    // have taken the row.
    const { log, writes } = await ackLost('ack_lost_past_lease', 1_500);
    assert.deepEqual(writes, ['lease_lost', 'lease_lost', 'lease_lost']);
    assert.equal(log.of('lease_lost').length, 3);
  });

  for (const decided of ['ack', 'retry'] as const) {
    test(`transactional: a COMMIT (the ${decided} with the handler's transaction) asked of the server: reported written`, async () => {
      const table = `tx_lost_${decided}`;
      const queue = `tx-lost-${decided === 'ack' ? 1 : 2}`;
      const { outbox, link, log, writes } = await proxiedOutbox(db, newOutbox, table);
      await db.pool.query(`CREATE TABLE ${table}_side (message_id text NOT NULL)`);
      let runs = 0;
      outbox.subscribe(
        queue,
        async (message, ctx) => {
          runs += 1;
          if (runs > 1) return;
          await ctx.client.query(`INSERT INTO ${table}_side (message_id) VALUES ($1)`, [message.id]);
          // The delivery's COMMIT (after its ack, or its retry write once back at the savepoint) is
          // the next one sent: it lands, its answer is dropped.
          link.muteAnswersAfter('COMMIT');
          if (decided === 'retry') throw new Error('retry me');
        },
        { transactional: true, retry: new ConstantRetry({ delayMs: 1, maxAttempts: 5 }), ...FAST_POLL },
      );
      const [id] = await publishCommitted(outbox, db.pool, queue, ['x']);
      outbox.start();
      const settled = decided === 'ack' ? 1 : 2;
      await waitFor(() => writes.length === settled, { what: 'ctx.written settled', timeoutMs: 15_000 });
      await outbox.stop();
      assert.deepEqual(writes, decided === 'ack' ? ['written'] : ['written', 'written']);
      assert.equal(log.of('acked').length, 1);
      assert.equal(log.of('nacked_retried').length, decided === 'ack' ? 0 : 1);
      assert.equal(log.of('lease_lost').length, 0);
      assert.equal(runs, settled);
      assert.equal(await remaining(db.pool, queue, table), 0);
      const { rows } = await db.pool.query<{ message_id: string }>(`SELECT message_id FROM ${table}_side`);
      // The retried run's insert was rolled back with its savepoint; the acked one's committed once.
      assert.deepEqual(
        rows.map((row) => row.message_id),
        decided === 'ack' ? [id] : [],
      );
    });
  }

  for (const outcome of ['retry', 'dlq'] as const) {
    test(`a ${outcome === 'retry' ? 'retry UPDATE' : 'DLQ move'} is checked against the row: reported written, with its events`, async () => {
      // Neither may contain the marker: a claim's text and values would match it first.
      const table = `write_lost_${outcome === 'retry' ? 1 : 2}`;
      const queue = `write-lost-${outcome === 'retry' ? 1 : 2}`;
      const since = newOutbox.logger.entries.length;
      const { outbox, link, log, writes } = await proxiedOutbox(db, newOutbox, table);
      let runs = 0;
      outbox.subscribe(
        queue,
        (_message, ctx) => {
          runs += 1;
          if (runs > 1) {
            ctx.ack();
            return;
          }
          // The outcome statement (its name, in its Bind) is the next the marker matches.
          link.muteAnswersAfter(outcome);
          if (outcome === 'dlq') ctx.reject('bad');
          else ctx.nack({ delayMs: 1 });
        },
        { ackPolicy: 'manual', ...FAST_POLL },
      );
      await publishCommitted(outbox, db.pool, queue, ['x']);
      outbox.start();
      if (outcome === 'retry') {
        await log.waitFor('acked', 1, 15_000);
        await waitFor(() => writes.length === 2, { what: 'both runs settled ctx.written' });
        assert.deepEqual(writes, ['written', 'written']);
        assert.equal(log.of('nacked_retried').length, 1);
        assert.equal(runs, 2);
      } else {
        await waitFor(() => writes.length === 1, { what: 'ctx.written settled', timeoutMs: 15_000 });
        assert.deepEqual(writes, ['written']);
        assert.equal(log.of('dlq_written').length, 1);
        assert.equal(log.of('nacked_terminal').length, 1);
        assert.equal(runs, 1);
      }
      await outbox.stop();
      assert.equal(log.of('lease_lost').length, 0);
      assert.deepEqual(failedWritesLogged(since), []);
    });
  }
});
