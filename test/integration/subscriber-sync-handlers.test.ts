import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

/**
 * A handler that returns no promise is decided at its return (deliver.ts: no promise per such
 * delivery). What it decides later — in a `.then` it did not return — comes after it settled and
 * is ignored with a warning, as a decision after an async handler's promise settled always was.
 */
describe('synchronous handlers', () => {
  test('a decision made after the handler returned is ignored: a manual handler that returned undecided is retried', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'sync_late');
    const runs: number[] = [];
    outbox.subscribe(
      'late',
      (message, ctx) => {
        runs.push(message.attemptsCount);
        if (message.attemptsCount === 0) {
          // Decided after the return: too late.
          void Promise.resolve().then(() => {
            ctx.ack();
          });
          return;
        }
        ctx.ack();
      },
      { name: 'late', ackPolicy: 'manual', retry: { nextDelayMs: () => 0 }, ...FAST_POLL },
    );
    outbox.start();
    await inTransaction(db.pool, async (c) => await outbox.publish(c, 'late', { n: 1 }));
    await log.waitFor('acked');
    assert.deepEqual(runs, [0, 1]);
    assert.equal(log.of('nacked_retried').length, 1);
    await waitFor(() => newOutbox.logger.messages('warn').some((m) => m.includes('ctx.ack() called after the handler settled')), {
      what: 'the late ack warning',
    });
    assert.ok(
      newOutbox.logger.messages('error').some((m) => m.includes('manual handler returned without ctx.ack(), nack() or reject()')),
    );
  });

  test('a batch of slow synchronous handlers: each row is checked for staleness when its turn comes, so none starts past its lease', async () => {
    // Synchronous handlers run one after another inside one pump (no promise between them). The
    // pump must read the clock per row: with one reading per batch, rows 6-10 of this batch started
    // after their 1 s lease ran out, the next claim took them back through the expired branch, every
    // ack was fenced off and the batch ran again, forever (review of issue 18's drain-CPU change).
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'sync_slow');
    const runs = new Map<string, number>();
    outbox.subscribe(
      'slow',
      (message) => {
        runs.set(message.id, (runs.get(message.id) ?? 0) + 1);
        const until = performance.now() + 200;
        while (performance.now() < until) {
          // a synchronous handler that holds the event loop for 200 ms
        }
      },
      { name: 'slow', concurrency: 1, fetchBatchSize: 10, leaseTtlMs: 1000, ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(
      outbox,
      db.pool,
      'slow',
      Array.from({ length: 10 }, (_, i) => `m${i}`),
    );
    await log.waitFor('acked', 10, 30_000);
    assert.deepEqual([...runs.values()], Array<number>(10).fill(1), 'every row ran once');
    assert.equal(log.of('lease_lost').length, 0);
  });

  for (const lease of ['token', 'row-lock'] as const) {
    test(`a handler whose returned value's \`then\` throws fails like a throwing handler: retried, then acked (lease: '${lease}')`, async () => {
      const { outbox, log } = await migratedOutbox(newOutbox, db.pool, `sync_then_${lease.replace('-', '_')}`);
      const runs: number[] = [];
      outbox.subscribe(
        'then',
        (message) => {
          runs.push(message.attemptsCount);
          if (message.attemptsCount > 0) return undefined;
          // What a JavaScript handler may return: an object whose `then` getter throws.
          const returned = {
            get then(): never {
              throw new Error('then getter fails');
            },
          };
          return returned as unknown as Promise<void>;
        },
        { name: `then-${lease}`, lease, retry: { nextDelayMs: () => 0 }, ...FAST_POLL },
      );
      outbox.start();
      await inTransaction(db.pool, async (c) => await outbox.publish(c, 'then', { n: 1 }));
      await log.waitFor('acked');
      assert.deepEqual(runs, [0, 1]);
      assert.equal(log.of('nacked_retried').length, 1);
    });
  }
});
