import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
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
});
