import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Registry } from 'prom-client';

import type { Middleware } from '../../src/index.js';
import { ConstantRetry, HandlerTimeoutError, NoRetry } from '../../src/index.js';
import { prometheusMiddleware } from '../../src/prometheus/index.js';
import { ClaimDelayPool } from '../support/claim-delay-pool.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { TestLogger } from '../support/test-logger.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

const never = new Promise<void>(() => undefined);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
/** A subscription whose leases are renewed (nothing else bounds a run) with a 400 ms handlerTimeoutMs. */
const BOUNDED_UNDER_RENEWAL = {
  concurrency: 1,
  leaseTtlMs: 10_000,
  leaseRenewIntervalMs: 1000,
  handlerTimeoutMs: 400,
  retry: new ConstantRetry({ delayMs: 50 }),
  ...FAST_POLL,
};

/**
 * Without leaseRenewIntervalMs the lease bounds a run (DESIGN invariant 3: nothing waits forever).
 * In one process nothing else takes an expired row back: the claim leaves out the rows running here,
 * so before, a handler that never settled kept its row, its slot and its ordering key for good.
 */
describe('token lease: a run that outlives its lease (single process)', () => {
  test('a handler that never settles fails with HandlerTimeoutError at lease expiry; its slot and key go on', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'hung_handler');
    await inTransaction(db.pool, (client) => outbox.publishBatch(client, 'hung', ['hang', 'next'], { orderingKey: 'k' }));
    const handled: string[] = [];
    const reasons: unknown[] = [];
    outbox.subscribe(
      'hung',
      async (message, ctx) => {
        if (message.body === 'hang' && message.deliveriesCount === 1) {
          ctx.signal.addEventListener('abort', () => reasons.push(ctx.signal.reason));
          return never;
        }
        handled.push(String(message.body));
      },
      { concurrency: 1, leaseTtlMs: 800, retry: new NoRetry(), ...FAST_POLL },
    );
    outbox.start();
    try {
      const [terminal] = await log.waitFor('nacked_terminal', 1, 15_000);
      assert.equal(terminal?.exceptionType, 'HandlerTimeoutError');
      assert.equal(reasons.length, 1, 'the hung handler was told by its signal');
      assert.ok(reasons[0] instanceof HandlerTimeoutError);
      await waitFor(() => handled.includes('next'), { timeoutMs: 10_000, what: 'the next row of the key handled' });
      const { rows } = await db.pool.query<{ failure_reason: string; last_exception_type: string }>(
        'SELECT failure_reason, last_exception_type FROM hung_handler_dlq',
      );
      assert.deepEqual(rows, [{ failure_reason: 'retry_terminal', last_exception_type: 'HandlerTimeoutError' }]);
    } finally {
      await outbox.stop();
    }
  });

  for (const observed of [false, true])
    test(`several handlers past their lease in one sweep are all failed in it: their ends come after the sweep${observed ? ' (Prometheus observing)' : ''}`, async () => {
      // An asynchronous handler's run ends without a promise (deliver.ts, PendingRun). A handler that
      // acked and then hangs ends at its timeout with its ack handed to the acker, nothing to wait
      // for: ended inside the sweep over the running deliveries, each end swapped the last run into
      // its place, and the sweep skipped that run until the next one, a quarter of the lease later.
      let sweep = 0;
      let sweepOpen = false;
      const sweeps: number[] = [];
      const logger = new (class extends TestLogger {
        override warn(fields: Record<string, unknown>, message: string): void {
          super.warn(fields, message);
          if (!message.startsWith('handler ran past its lease')) return;
          // Warnings with no microtask between them were logged by one sweep.
          if (!sweepOpen) {
            sweepOpen = true;
            sweep += 1;
            queueMicrotask(() => {
              sweepOpen = false;
            });
          }
          sweeps.push(sweep);
        }
      })();
      const { outbox, log } = await migratedOutbox(newOutbox, db.pool, observed ? 'hung_four_observed' : 'hung_four', {
        logger,
        ...(observed ? { middlewares: [prometheusMiddleware({ registry: new Registry() })] } : {}),
      });
      await publishCommitted(outbox, db.pool, 'hung', ['a', 'b', 'c', 'd']);
      outbox.subscribe(
        'hung',
        async (_message, ctx) => {
          ctx.ack();
          await never;
        },
        // One claim: the four leases share their start, so one sweep finds all of them past it.
        { concurrency: 4, leaseTtlMs: 800, ...FAST_POLL },
      );
      outbox.start();
      try {
        await log.waitFor('acked', 4, 15_000);
        assert.deepEqual(sweeps, [1, 1, 1, 1], 'all four failed by the first sweep past the lease');
      } finally {
        await outbox.stop();
      }
    });

  test('handlerTimeoutMs under renewal: a run past it fails with HandlerTimeoutError and is retried; the next run acks', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'hung_bounded');
    await publishCommitted(outbox, db.pool, 'hung', ['x']);
    const reasons: unknown[] = [];
    outbox.subscribe(
      'hung',
      async (message, ctx) => {
        if (message.deliveriesCount > 1) return;
        ctx.signal.addEventListener('abort', () => reasons.push(ctx.signal.reason));
        // A handler that ignores its signal and would end long after its timeout.
        await new Promise((resolve) => setTimeout(resolve, 3000).unref());
      },
      BOUNDED_UNDER_RENEWAL,
    );
    outbox.start();
    try {
      const [retried] = await log.waitFor('nacked_retried', 1, 10_000);
      assert.equal(retried?.exceptionType, 'HandlerTimeoutError');
      const [acked] = await log.waitFor('acked', 1, 10_000);
      assert.equal(acked?.deliveriesCount, 2);
      assert.ok(reasons[0] instanceof HandlerTimeoutError && reasons[0].bound === 'handlerTimeoutMs', String(reasons[0]));
    } finally {
      await outbox.stop();
    }
    assert.equal(log.of('acked').length, 1, 'the timed-out run, ending later, wrote nothing');
  });

  test('a transactional handler past handlerTimeoutMs: its transaction is closed, nothing of it commits, the row is retried', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'hung_tx');
    await db.pool.query('CREATE TABLE hung_tx_writes (run int NOT NULL)');
    await publishCommitted(outbox, db.pool, 'hung', ['x']);
    outbox.subscribe(
      'hung',
      async (message, ctx) => {
        await ctx.client.query('INSERT INTO hung_tx_writes (run) VALUES ($1)', [message.deliveriesCount]);
        if (message.deliveriesCount === 1) return never;
      },
      { ...BOUNDED_UNDER_RENEWAL, transactional: true },
    );
    outbox.start();
    try {
      const [retried] = await log.waitFor('nacked_retried', 1, 10_000);
      assert.equal(retried?.exceptionType, 'HandlerTimeoutError');
      await log.waitFor('acked', 1, 10_000);
    } finally {
      await outbox.stop();
    }
    const { rows } = await db.pool.query<{ run: number }>('SELECT run FROM hung_tx_writes');
    assert.deepEqual(rows, [{ run: 2 }], "only the second run's write committed");
  });

  test('a transactional handler that never settles, without renewal: its lock expiry ends the run as lease_lost, and the row runs again', async () => {
    // Before (review): the expiry closed the transaction but the run waited for the handler for
    // good, so the row, kept out of this process's claims, and the only slot were held.
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'hung_tx_lease');
    await publishCommitted(outbox, db.pool, 'hung', ['hang', 'next']);
    const handled: string[] = [];
    outbox.subscribe(
      'hung',
      async (message) => {
        if (message.body === 'hang' && message.deliveriesCount === 1) return never;
        handled.push(`${String(message.body)}@${message.deliveriesCount}`);
      },
      { transactional: true, concurrency: 1, leaseTtlMs: 800, ...FAST_POLL },
    );
    outbox.start();
    try {
      await waitFor(() => handled.length === 2, { timeoutMs: 15_000, what: 'both rows handled' });
      assert.deepEqual(handled.sort(), ['hang@2', 'next@1']);
      assert.equal(log.of('lease_lost').length, 1);
      assert.equal(log.of('nacked_retried').length, 0, 'a lock expiry writes nothing');
    } finally {
      await outbox.stop();
    }
  });

  test('handlerTimeoutMs passing while a transactional run commits does not abort the COMMIT: the run is acked', async () => {
    // The ack's DELETE is held 600 ms on its way (a slow server), past the 200 ms bound. Before
    // (review), the sweep aborted the run, which destroyed the connection mid-COMMIT and failed a
    // handler that had succeeded: a retry, or the DLQ under reject_on_error.
    const pool = new ClaimDelayPool({ connectionString: db.url, max: 6 }, () => sleep(600), undefined, /_ack_/);
    db.onCleanup(() => pool.end());
    const { outbox, log } = await migratedOutbox(newOutbox, pool, 'slow_commit');
    await publishCommitted(outbox, db.pool, 'slow', ['x']);
    outbox.subscribe('slow', () => Promise.resolve(), {
      transactional: true,
      leaseTtlMs: 5000,
      handlerTimeoutMs: 200,
      ackPolicy: 'reject_on_error',
      ...FAST_POLL,
    });
    outbox.start();
    try {
      await log.waitFor('acked', 1, 10_000);
      assert.equal(log.of('nacked_terminal').length, 0);
    } finally {
      await outbox.stop();
    }
  });

  test('a consume middleware stuck past the lease: the slot is freed, the row comes back through lease expiry, and the stuck run never starts its handler', async () => {
    let hangs = 1;
    let resumed = false;
    const hanging: Middleware = {
      consume: async (_ctx, next) => {
        if (hangs-- > 0) {
          await new Promise((resolve) => setTimeout(resolve, 2500).unref());
          resumed = true;
        }
        await next();
      },
    };
    // queryTimeoutMs 300: a timed-out run is taken for stuck 3 × queryTimeoutMs after its timeout
    // (an outcome write would have ended by then).
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'hung_middleware', {
      middlewares: [hanging],
      queryTimeoutMs: 300,
    });
    await publishCommitted(outbox, db.pool, 'hung', ['first', 'second']);
    const handled: string[] = [];
    outbox.subscribe('hung', (message) => void handled.push(String(message.body)), {
      concurrency: 1,
      leaseTtlMs: 800,
      ...FAST_POLL,
    });
    outbox.start();
    try {
      const acked = await log.waitFor('acked', 2, 15_000);
      assert.deepEqual(acked.map((event) => event.deliveriesCount).sort(), [1, 2], 'the stuck row was delivered again');
      await waitFor(() => resumed, { timeoutMs: 5000, what: 'the stuck middleware resumed' });
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.deepEqual(handled.sort(), ['first', 'second'], 'the resumed run did not start its handler');
    } finally {
      await outbox.stop();
    }
  });

  test("lease: 'row-lock', a consume middleware that never calls next(): the batch fails that delivery at its deadline and commits the rest", async () => {
    // Before, the batch waited for the delivery for good: its transaction stayed open with every
    // row of the batch locked, and its loop claimed nothing more.
    let hangs = 1;
    const hanging: Middleware = {
      consume: async (ctx, next) => {
        if (ctx.messageId !== undefined && hangs-- > 0) await never;
        await next();
      },
    };
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'hung_row_lock', { middlewares: [hanging] });
    await publishCommitted(outbox, db.pool, 'hung', ['first', 'second']);
    const handled: string[] = [];
    outbox.subscribe('hung', (message) => void handled.push(String(message.body)), {
      lease: 'row-lock',
      concurrency: 2,
      leaseTtlMs: 800,
      retry: new ConstantRetry({ delayMs: 50 }),
      ...FAST_POLL,
    });
    outbox.start();
    try {
      const [retried] = await log.waitFor('nacked_retried', 1, 15_000);
      assert.equal(retried?.exceptionType, 'HandlerTimeoutError');
      await log.waitFor('acked', 2, 15_000);
      assert.deepEqual(handled.sort(), ['first', 'second'], 'each ran once: the stuck delivery never reached its handler');
    } finally {
      await outbox.stop();
    }
  });
});
