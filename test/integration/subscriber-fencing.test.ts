import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import pg from 'pg';

import { ConstantRetry } from '../../src/index.js';
import { renewalRefusingPool } from '../support/claim-delay-pool.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

/** A promise with its resolve, to hold a handler until the test lets it go. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

describe('lease-token fencing (DESIGN invariant 2)', () => {
  for (const phase of ['terminal', 'retry'] as const) {
    test(`a stale holder's ${phase === 'terminal' ? 'ack' : 'retry'} changes nothing and reports lease_lost, never ${phase === 'terminal' ? 'acked' : 'nacked_retried'}`, async () => {
      const table = `f_${phase}`;
      // Two instances with separate pools, as two processes would have. The stale one renews its
      // leases, but its renewals fail, so its handler runs on (a lease-bound handler would be timed
      // out at expiry: subscriber-handler-timeout.test.ts) while the lease expires and the other
      // takes the row.
      const otherPool = new pg.Pool({ connectionString: db.url, max: 4 });
      db.onCleanup(() => otherPool.end());
      const stalePool = renewalRefusingPool(db.url);
      db.onCleanup(() => stalePool.end());
      const stale = await migratedOutbox(newOutbox, stalePool, table);
      const fresh = await migratedOutbox(newOutbox, otherPool, table);
      const firstRun = gate();
      const deliveries: number[] = [];
      stale.outbox.subscribe(
        'fenced',
        async (message) => {
          deliveries.push(message.deliveriesCount);
          if (message.deliveriesCount > 1) return;
          await firstRun.promise; // outlives its 300 ms lease
          if (phase === 'retry') throw new Error('late failure');
        },
        {
          leaseTtlMs: 300,
          leaseRenewIntervalMs: 100,
          concurrency: 1,
          fetchBatchSize: 1,
          retry: new ConstantRetry({ delayMs: 60_000 }),
          ...FAST_POLL,
        },
      );
      stale.outbox.start();
      await publishCommitted(stale.outbox, db.pool, 'fenced', ['x']);
      await stale.log.waitFor('dispatched');

      fresh.outbox.subscribe(
        'fenced',
        (message) => {
          deliveries.push(message.deliveriesCount);
        },
        { leaseTtlMs: 300, ...FAST_POLL },
      );
      fresh.outbox.start();
      // The re-claim after expiry (by either instance: the stale one keeps claiming too) ran and its ack landed.
      await waitFor(() => stale.log.of('acked').length + fresh.log.of('acked').length === 1, {
        what: 'the re-claimed delivery acked',
      });
      assert.equal(await remaining(db.pool, 'fenced', table), 0);

      firstRun.open();
      const [lost] = await stale.log.waitFor('lease_lost');
      assert.equal(lost?.phase, phase);
      assert.equal(lost?.deliveriesCount, 1);
      assert.equal(deliveries[0], 1);
      assert.ok(deliveries.length >= 2);
      const acks = [...stale.log.of('acked'), ...fresh.log.of('acked')];
      assert.equal(acks.length, 1, 'exactly one ack is reported: the current holder');
      assert.ok(acks[0]!.deliveriesCount > 1, 'and not the stale first delivery');
      assert.equal(stale.log.of('nacked_retried').length, 0, 'the stale failure is not reported as a retry');
      assert.equal(await remaining(db.pool, 'fenced', table), 0, 'the stale write did not resurrect or touch a row');
      assert.ok(newOutbox.logger.messages('warn').some((m) => m.includes('lease expired before the outcome was written')));
    });
  }

  test('lease renewal keeps a handler running 3 × leaseTtlMs from being re-claimed', async () => {
    // Renewed every 100 ms, a 600 ms lease survives a ~500 ms stall of a loaded machine.
    const otherPool = new pg.Pool({ connectionString: db.url, max: 4 });
    db.onCleanup(() => otherPool.end());
    const slow = await migratedOutbox(newOutbox, db.pool, 'f_renew');
    const competitor = await migratedOutbox(newOutbox, otherPool, 'f_renew');
    let runs = 0;
    let aborted = false;
    slow.outbox.subscribe(
      'renew',
      async (_message, ctx) => {
        runs += 1;
        await new Promise((resolve) => setTimeout(resolve, 1_800));
        aborted = ctx.signal.aborted;
      },
      { leaseTtlMs: 600, leaseRenewIntervalMs: 100, ...FAST_POLL },
    );
    competitor.outbox.subscribe(
      'renew',
      () => {
        runs += 1;
      },
      { leaseTtlMs: 600, ...FAST_POLL },
    );
    slow.outbox.start();
    await publishCommitted(slow.outbox, db.pool, 'renew', ['x']);
    await slow.log.waitFor('dispatched');
    competitor.outbox.start();
    await slow.log.waitFor('acked', 1, 5_000);
    assert.equal(runs, 1, 'handled once');
    assert.equal(aborted, false);
    assert.equal(slow.log.of('lease_lost').length + competitor.log.of('lease_lost').length, 0);
    assert.equal(competitor.log.of('dispatched').length, 0);
  });

  test('a renewal that finds the lease gone aborts the handler signal', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'f_renew_lost');
    let abortedReason: unknown;
    const done = gate();
    outbox.subscribe(
      'lost',
      async (_message, ctx) => {
        ctx.signal.addEventListener('abort', () => {
          abortedReason = ctx.signal.reason;
          done.open();
        });
        await done.promise;
      },
      { leaseTtlMs: 10_000, leaseRenewIntervalMs: 50, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'lost', ['x']);
    await log.waitFor('dispatched');
    // Someone else takes the row over (what an expiry + re-claim elsewhere looks like).
    await db.pool.query('UPDATE f_renew_lost SET acquired_token = gen_random_uuid()');
    await waitFor(() => abortedReason !== undefined, { what: 'signal aborted' });
    assert.match(String(abortedReason), /lease lost/);
    await log.waitFor('lease_lost');
    assert.equal(log.of('acked').length, 0);
  });
});
