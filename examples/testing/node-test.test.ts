// Testing txoutbox handlers with node:test, no database: `node --import tsx --test examples/testing/node-test.test.ts`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ExponentialRetry } from 'txoutbox';
import { createTestOutbox, runHandler, testMessage } from 'txoutbox/testing';

import { type Mailer, type Order, placeOrder, RateLimitedError, sendConfirmation } from './orders.js';

const order: Order = { orderId: 1, email: 'ada@example.com', total: 42 };
const mailerThat = (send: Mailer['send']): Mailer => ({ send });

// One handler decision in one line each.
test('a sent e-mail acks', async () => {
  const handler = sendConfirmation(mailerThat(() => Promise.resolve()));
  assert.deepEqual(await runHandler(handler, testMessage('order.created', order)), { kind: 'ack' });
});

test('a rate limit nacks with its delay', async () => {
  const handler = sendConfirmation(mailerThat(() => Promise.reject(new RateLimitedError(500))));
  assert.deepEqual(await runHandler(handler, testMessage('order.created', order)), { kind: 'nack', delayMs: 500 });
});

test('an invalid address is rejected, a mailer crash throws', async () => {
  const ok = sendConfirmation(mailerThat(() => Promise.resolve()));
  assert.deepEqual(await runHandler(ok, testMessage('order.created', { ...order, email: 'nope' })), {
    kind: 'reject',
    reason: 'invalid e-mail address for order 1',
  });
  const crash = new Error('smtp down');
  const failing = sendConfirmation(mailerThat(() => Promise.reject(crash)));
  assert.deepEqual(await runHandler(failing, testMessage('order.created', order)), { kind: 'threw', error: crash });
});

// The whole flow through an in-memory outbox: transactions, retries on a clock, the DLQ.
test('an order rolled back sends nothing; a committed one is confirmed and invoiced', async () => {
  const outbox = createTestOutbox();
  const sent: string[] = [];
  outbox.subscribe('order.created', sendConfirmation(mailerThat((to) => Promise.resolve(void sent.push(to)))));
  const invoices: unknown[] = [];
  outbox.subscribe('invoice.requested', (message) => {
    invoices.push(message.body);
  });

  await assert.rejects(
    outbox.transaction(async (tx) => {
      await placeOrder(outbox, tx, { ...order, orderId: 2 });
      throw new Error('payment failed'); // the order's transaction rolls back, its event with it
    }),
  );
  await outbox.transaction((tx) => placeOrder(outbox, tx, order));
  await outbox.drain();

  assert.deepEqual(sent, ['ada@example.com']);
  assert.deepEqual(invoices, [{ orderId: 1, total: 42 }]);
});

test('a failing mailer is retried on the strategy schedule, then dead-lettered', async () => {
  const outbox = createTestOutbox();
  outbox.subscribe('order.created', sendConfirmation(mailerThat(() => Promise.reject(new Error('smtp down')))), {
    retry: new ExponentialRetry({ initialDelayMs: 1000, maxAttempts: 3 }),
  });
  await outbox.transaction((tx) => placeOrder(outbox, tx, order));

  await outbox.drain(); // the first run fails; its retry is due in 1 s
  outbox.clock.advance(1000);
  await outbox.drain(); // the second; the next is due in 2 s
  await outbox.drain({ advanceClock: true }); // the rest, moving the clock to each retry

  assert.deepEqual(
    outbox.retried.map((r) => [r.attempt, r.delayMs]),
    [
      [1, 1000],
      [2, 2000],
    ],
  );
  const [dead] = outbox.deadLetters;
  assert.equal(dead?.failureReason, 'retry_terminal');
  assert.equal(dead?.attemptsCount, 3);
  assert.match(dead?.lastException ?? '', /^Error: smtp down/);
  assert.deepEqual(dead?.body, order);
});
