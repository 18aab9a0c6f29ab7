// Testing txoutbox handlers with vitest, no database: `npx vitest run --config examples/testing/vitest.config.ts`.
import { ExponentialRetry } from 'txoutbox';
import { createHandlerContext, createTestOutbox, runHandler, testMessage } from 'txoutbox/testing';
import { describe, expect, it } from 'vitest';

import { type Mailer, type Order, placeOrder, RateLimitedError, sendConfirmation } from './orders.js';

const order: Order = { orderId: 1, email: 'ada@example.com', total: 42 };
const mailerThat = (send: Mailer['send']): Mailer => ({ send });

describe('sendConfirmation, one decision at a time', () => {
  it('acks and asks for an invoice caused by the order', async () => {
    const message = testMessage('order.created', order);
    const { ctx, decision, published } = createHandlerContext({ message });
    await sendConfirmation(mailerThat(() => Promise.resolve()))(message, ctx);
    expect(decision()).toEqual({ kind: 'ack' });
    expect(published).toHaveLength(1);
    expect(published[0]?.queue).toBe('invoice.requested');
    expect(published[0]?.options.headers?.['causation-id']).toBe(message.id);
  });

  it('nacks with the rate limit as its delay', async () => {
    const handler = sendConfirmation(mailerThat(() => Promise.reject(new RateLimitedError(500))));
    expect(await runHandler(handler, testMessage('order.created', order))).toEqual({ kind: 'nack', delayMs: 500 });
  });
});

describe('the order flow through an in-memory outbox', () => {
  it('retries on the strategy schedule, then dead-letters', async () => {
    const outbox = createTestOutbox();
    outbox.subscribe('order.created', sendConfirmation(mailerThat(() => Promise.reject(new Error('smtp down')))), {
      retry: new ExponentialRetry({ initialDelayMs: 1000, maxAttempts: 3 }),
    });
    await outbox.transaction((tx) => placeOrder(outbox, tx, order));
    await outbox.drain({ advanceClock: true });
    expect(outbox.retried.map((r) => r.delayMs)).toEqual([1000, 2000]);
    expect(outbox.deadLetters[0]).toMatchObject({ failureReason: 'retry_terminal', attemptsCount: 3, body: order });
  });
});
