import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Registry } from 'prom-client';

import type { SubscribeOptions } from '../../src/index.js';
import { prometheusMiddleware } from '../../src/prometheus/index.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { TestLogger } from '../support/test-logger.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

const UNDECIDED = 'manual handler returned without ctx.ack(), nack() or reject()';

/** A logger that throws on one message: a fault outside the handler, after the handler settled. */
class ThrowingLogger extends TestLogger {
  override error(fields: Record<string, unknown>, message: string): void {
    super.error(fields, message);
    if (message.startsWith(UNDECIDED)) throw new Error('the logger failed');
  }
}

/**
 * An asynchronous handler's run is decided when its promise settles, outside the call that started
 * the delivery (deliver.ts, PendingRun). A fault there — here the logger, throwing on the
 * "undecided" error of a manual handler — must end the delivery as a failure the subscription hears
 * of: its slot freed, the row left leased and delivered again, nothing unhandled.
 */
describe('a fault after an asynchronous handler settled', () => {
  for (const lease of ['token', 'row-lock'] as const) {
    test(`${lease}: the slot is freed, the row is delivered again, the next rows run`, async () => {
      const logger = new ThrowingLogger();
      const { outbox, log } = await migratedOutbox(newOutbox, db.pool, `async_fault_${lease.replace('-', '_')}`, { logger });
      const runs: string[] = [];
      const options: SubscribeOptions = {
        name: 'faulty',
        ackPolicy: 'manual',
        concurrency: 1,
        fetchBatchSize: 1,
        leaseTtlMs: 1000,
        lease,
        ...FAST_POLL,
      };
      outbox.subscribe(
        'faulty',
        async (message, ctx) => {
          await Promise.resolve();
          const { n } = message.body as { n: number };
          const run = runs.filter((earlier) => earlier.startsWith(`${n}/`)).length + 1;
          runs.push(`${n}/${run}`);
          // The first run of n=1 returns undecided: the logger throws on the error it logs. (Not by
          // deliveriesCount: a row-lock batch's row that wrote nothing is claimed again uncounted.)
          if (n === 1 && run === 1) return;
          ctx.ack();
        },
        options,
      );
      outbox.start();
      await publishCommitted(outbox, db.pool, 'faulty', [{ n: 1 }, { n: 2 }]);
      await log.waitFor('acked', 2, 20_000);
      assert.deepEqual(
        runs.filter((run) => run.startsWith('2/')),
        ['2/1'],
        'the next row ran once',
      );
      assert.ok(runs.includes('1/1') && runs.includes('1/2'), `the faulted row was delivered again: ${runs.join(' ')}`);
      await waitFor(() => logger.messages('error').includes('delivery failed unexpectedly'), { what: 'the fault, logged' });
      const { rows } = await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM async_fault_${lease.replace('-', '_')}`);
      assert.equal(rows[0]?.n, '0');
    });
  }

  test('a promise whose await throws at once (a throwing `constructor` getter) fails the run, and the slot goes on', async () => {
    // `await` reads a native promise's `constructor` before it returns: this one's await throws
    // while the delivery is still being started, before deliver() said where its end goes (review).
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'async_fault_getter');
    outbox.subscribe(
      'getter',
      (message) => {
        const done = Promise.resolve();
        if (message.deliveriesCount > 1) return done;
        void Object.defineProperty(done, 'constructor', {
          get() {
            throw new Error('no constructor');
          },
        });
        return done;
      },
      { name: 'getter', concurrency: 1, retry: { nextDelayMs: () => 0 }, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'getter', ['x', 'y']);
    const acked = await log.waitFor('acked', 2, 20_000);
    assert.deepEqual(
      acked.map((event) => event.deliveriesCount),
      [2, 2],
      'each first run failed, each second acked',
    );
    assert.deepEqual(
      log.of('nacked_retried').map((event) => event.exceptionType),
      ['Error', 'Error'],
    );
  });

  test('with an observing middleware (Prometheus): the fault fails the run under the ack policy, a retry', async () => {
    const logger = new ThrowingLogger();
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'async_fault_observed', {
      logger,
      middlewares: [prometheusMiddleware({ registry: new Registry() })],
    });
    const runs: number[] = [];
    outbox.subscribe(
      'observed',
      async (message, ctx) => {
        await Promise.resolve();
        runs.push(message.deliveriesCount);
        if (message.deliveriesCount > 1) ctx.ack();
      },
      { name: 'observed', ackPolicy: 'manual', retry: { nextDelayMs: () => 0 }, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'observed', ['x']);
    await log.waitFor('acked', 1, 20_000);
    assert.deepEqual(runs, [1, 2]);
    assert.deepEqual(
      log.of('nacked_retried').map((event) => event.exceptionType),
      ['Error'],
      "the logger's fault, as the run's error",
    );
  });
});
