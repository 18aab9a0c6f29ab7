import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { describe, test } from 'node:test';

import pg from 'pg';

import { ConstantRetry, OutboxStoppedError } from '../../src/index.js';
import { ClaimDelayPool } from '../support/claim-delay-pool.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

describe('stop(): graceful drain', () => {
  test('in-flight handlers finish and their acks land before stop() resolves; unstarted rows are released', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 's_drain', { gracefulTimeoutMs: 10_000 });
    let finished = 0;
    outbox.subscribe(
      'drain',
      async () => {
        await new Promise((resolve) => setTimeout(resolve, 300));
        finished += 1;
      },
      { concurrency: 2, fetchBatchSize: 10, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(
      outbox,
      db.pool,
      'drain',
      Array.from({ length: 10 }, (_, i) => i),
    );
    await log.waitFor('dispatched', 2);
    await outbox.stop();
    assert.equal(finished, 2, 'the two running handlers completed');
    assert.equal(log.of('acked').length, 2, 'and their deletes were flushed before stop() returned');
    assert.equal(log.of('drain_timeout').length, 0);
    const { rows } = await db.pool.query<{ leased: string; total: string; max_deliveries: number }>(
      'SELECT count(*) FILTER (WHERE acquired_token IS NOT NULL) AS leased, count(*) AS total, max(deliveries_count) AS max_deliveries FROM s_drain',
    );
    assert.deepEqual(
      rows[0],
      { leased: '0', total: '8', max_deliveries: 0 },
      'buffered rows were given back, unleased and uncounted',
    );
  });

  test('lease renewal keeps running while stop() drains: a handler slower than leaseTtlMs is not re-claimed elsewhere', async () => {
    // Another process polling the same queue, with its own pool.
    const otherPool = new pg.Pool({ connectionString: db.url, max: 4 });
    db.onCleanup(() => otherPool.end());
    const slow = await migratedOutbox(newOutbox, db.pool, 's_renew_drain', { gracefulTimeoutMs: 10_000 });
    const competitor = await migratedOutbox(newOutbox, otherPool, 's_renew_drain');
    const runs: string[] = [];
    let aborted = false;
    let handlerEndedAt = Number.POSITIVE_INFINITY;
    slow.outbox.subscribe(
      'renew-drain',
      async (_message, ctx) => {
        runs.push('slow');
        await new Promise((resolve) => setTimeout(resolve, 1_800)); // 3 × leaseTtlMs
        aborted = ctx.signal.aborted;
        handlerEndedAt = performance.now();
      },
      // Renewed every 100 ms, a 600 ms lease survives a ~500 ms stall of a loaded machine.
      { leaseTtlMs: 600, leaseRenewIntervalMs: 100, ...FAST_POLL },
    );
    competitor.outbox.subscribe(
      'renew-drain',
      () => {
        runs.push('competitor');
      },
      { leaseTtlMs: 600, ...FAST_POLL },
    );
    slow.outbox.start();
    await publishCommitted(slow.outbox, db.pool, 'renew-drain', ['x']);
    await slow.log.waitFor('dispatched');
    competitor.outbox.start();
    await slow.outbox.stop();
    assert.ok(performance.now() >= handlerEndedAt, 'stop() waited for the handler');
    assert.deepEqual(runs, ['slow'], 'handled once, never re-claimed by the competitor');
    assert.equal(aborted, false);
    assert.equal(slow.log.of('acked').length, 1);
    assert.equal(slow.log.of('lease_lost').length + competitor.log.of('lease_lost').length, 0);
    assert.equal(competitor.log.of('dispatched').length, 0);
    assert.equal(await remaining(db.pool, 'renew-drain', 's_renew_drain'), 0);
  });

  test('a renewal sent before stop() released the buffered rows reports no lost lease for them', async () => {
    // The renewal statement is held before it is sent (the database is real) while stop() gives
    // the buffered rows back: the renewal then matches none of them, on purpose.
    let holdRenewal = false;
    let renewalHeld: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (renewalHeld = resolve));
    let sendRenewal: () => void = () => undefined;
    const pool = new ClaimDelayPool(
      { connectionString: db.url, max: 6 },
      () => {
        if (!holdRenewal) return Promise.resolve();
        holdRenewal = false;
        renewalHeld();
        return new Promise<void>((resolve) => (sendRenewal = resolve));
      },
      undefined,
      /renew/,
    );
    db.onCleanup(() => pool.end());
    const logger = newOutbox.logger;
    const { outbox, log } = await migratedOutbox(newOutbox, pool, 's_renew_release', { gracefulTimeoutMs: 10_000 });
    let finish: () => void = () => undefined;
    const running = new Promise<void>((resolve) => (finish = resolve));
    outbox.subscribe('renew-release', () => running, {
      concurrency: 1,
      fetchBatchSize: 5,
      leaseRenewIntervalMs: 50,
      ...FAST_POLL,
    });
    await publishCommitted(outbox, db.pool, 'renew-release', [1, 2, 3, 4, 5]);
    outbox.start();
    await log.waitFor('dispatched');
    holdRenewal = true;
    await held;
    const stopped = outbox.stop();
    await waitFor(
      async () => {
        const { rows } = await db.pool.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM s_renew_release WHERE acquired_token IS NULL',
        );
        return rows[0]?.n === 4;
      },
      { what: 'the four buffered rows released' },
    );
    sendRenewal();
    await new Promise((resolve) => setTimeout(resolve, 200));
    finish();
    await stopped;
    assert.deepEqual(
      logger.messages('warn').filter((m) => m.includes('lease renewal found the lease lost')),
      [],
      'released rows are not lost leases',
    );
    assert.equal(log.of('acked').length, 1);
  });

  test('a wedged handler is aborted after gracefulTimeoutMs; its row keeps the lease and is redelivered later', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 's_wedged', { gracefulTimeoutMs: 200 });
    let signalReason: unknown;
    outbox.subscribe(
      'wedged',
      async (_message, ctx) => {
        await new Promise<void>((resolve) => {
          ctx.signal.addEventListener('abort', () => {
            signalReason = ctx.signal.reason;
            resolve();
          });
        });
        // Even if it returns after the abort, its outcome must not be written.
      },
      { leaseTtlMs: 500, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'wedged', ['stuck']);
    await log.waitFor('dispatched');
    const started = Date.now();
    await outbox.stop();
    const tookMs = Date.now() - started;
    assert.ok(tookMs >= 190 && tookMs < 2_000, `stop() waited the graceful timeout, took ${tookMs} ms`);
    assert.match(String(signalReason), /graceful timeout/);
    const [timeout] = log.of('drain_timeout');
    assert.deepEqual(timeout, {
      type: 'drain_timeout',
      subscriber: 'wedged',
      queues: ['wedged'],
      inFlight: 1,
      timeoutSeconds: 0.2,
    });
    assert.equal(log.of('acked').length, 0);
    assert.equal(await remaining(db.pool, 'wedged', 's_wedged'), 1, 'the row is not lost');

    const next = await migratedOutbox(newOutbox, db.pool, 's_wedged');
    next.outbox.subscribe('wedged', () => undefined, { leaseTtlMs: 500, ...FAST_POLL });
    next.outbox.start();
    const [acked] = await next.log.waitFor('acked');
    assert.equal(acked?.deliveriesCount, 2, 'redelivered after the lease expired');
  });

  test('a handler that first reads ctx.signal after the graceful timeout still finds it aborted, with the reason', async () => {
    // The signal is made on first read (most handlers never read it): an abort before that read
    // must not be lost.
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 's_late_signal', { gracefulTimeoutMs: 150 });
    let seen: { aborted: boolean; reason: unknown } | undefined;
    outbox.subscribe(
      'late-signal',
      async (_message, ctx) => {
        await new Promise((resolve) => setTimeout(resolve, 400));
        seen = { aborted: ctx.signal.aborted, reason: ctx.signal.reason };
      },
      { leaseTtlMs: 5_000, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'late-signal', ['x']);
    await log.waitFor('dispatched');
    await outbox.stop();
    assert.equal(log.of('drain_timeout').length, 1);
    await waitFor(() => seen !== undefined, { what: 'the handler to read its signal' });
    assert.equal(seen?.aborted, true);
    assert.match(String(seen?.reason), /graceful timeout/);
    assert.equal(await remaining(db.pool, 'late-signal', 's_late_signal'), 1, 'the row keeps its lease');
  });

  test('stop() stops every subscription in parallel and is idempotent', async () => {
    // 1 s drains: in sequence they take ≥ 3 s, in parallel ~1 s, with room for a loaded machine's stop work.
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 's_parallel', { gracefulTimeoutMs: 1_000 });
    for (const queue of ['p1', 'p2', 'p3']) {
      outbox.subscribe(
        queue,
        async () => {
          await new Promise(() => undefined); // never settles
        },
        FAST_POLL,
      );
    }
    outbox.start();
    for (const queue of ['p1', 'p2', 'p3']) await publishCommitted(outbox, db.pool, queue, ['x']);
    await log.waitFor('dispatched', 3);
    const started = Date.now();
    await Promise.all([outbox.stop(), outbox.stop()]);
    const tookMs = Date.now() - started;
    assert.ok(tookMs < 2_500, `three 1 s drains in parallel, not in sequence: ${tookMs} ms`);
    assert.equal(log.of('drain_timeout').length, 3);
    assert.equal(await outbox.ping(), false, 'a stopped outbox is not healthy');
  });

  test('producer calls work while stop() drains: a running handler publishes its follow-up; after the drain they are refused', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 's_chain', { gracefulTimeoutMs: 10_000 });
    let stopCalled!: () => void;
    const stopping = new Promise<void>((resolve) => (stopCalled = resolve));
    const errors: unknown[] = [];
    outbox.subscribe(
      'chain',
      async (message) => {
        if (message.body !== 'first') return;
        await stopping; // the deploy's SIGTERM arrives while this handler runs
        try {
          await inTransaction(db.pool, async (client) => {
            await outbox.publish(client, 'chain-next', 'follow-up');
            await outbox.publishBatch(client, 'chain-next', ['batch-1', 'batch-2']);
            await outbox.publish(client, 'chain-next', 'timer', { timerId: 't1', activateInMs: 60_000 });
            assert.equal(await outbox.cancelTimer(client, 'chain-next', 't1'), true);
          });
          assert.equal((await outbox.fetchUnprocessed({ queue: 'chain-next' })).length, 3);
        } catch (error) {
          errors.push(error);
          throw error;
        }
      },
      { ...FAST_POLL, retry: new ConstantRetry({ delayMs: 60_000 }) },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'chain', ['first']);
    await log.waitFor('dispatched');
    const stopped = outbox.stop();
    stopCalled();
    await stopped;
    assert.deepEqual(errors, [], 'no producer call was refused during the drain');
    assert.equal(log.of('acked').length, 1, 'the handler finished and was acked');
    assert.equal(await remaining(db.pool, 'chain-next', 's_chain'), 3, 'its follow-ups were committed');
    await assert.rejects(
      inTransaction(db.pool, (client) => outbox.publish(client, 'chain-next', 'late')),
      (error: unknown) => error instanceof OutboxStoppedError,
    );
    await assert.rejects(outbox.fetchUnprocessed(), (error: unknown) => error instanceof OutboxStoppedError);
  });

  test('an Outbox that was never started stops at once', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 's_unstarted');
    outbox.subscribe('never', () => undefined);
    await outbox.stop();
    assert.throws(() => outbox.subscribe('x', () => undefined), /after outbox.stop\(\)/);
  });
});
