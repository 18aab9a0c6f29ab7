import assert from 'node:assert/strict';
import { test } from 'node:test';

import { z } from 'zod';

import { type Handler, InvalidBodyError, InvalidOptionError, UnencodableBodyError } from '../../src/index.js';
import { createHandlerContext, runHandler, testMessage } from '../../src/testing/index.js';

const message = testMessage('order.created', { orderId: 7 });

test('a handler that returns acks; its decision reads in one line', async () => {
  const { ctx, decision } = createHandlerContext();
  const handler: Handler = () => undefined;
  await handler(message, ctx);
  assert.deepEqual(decision(), { kind: 'ack' });
});

test('nack with a delay, reject with a reason: only the fields given', async () => {
  const nack = createHandlerContext();
  nack.ctx.nack({ delayMs: 500 });
  assert.deepEqual(nack.decision(), { kind: 'nack', delayMs: 500 });
  assert.deepEqual(
    await runHandler((_m, { reject }) => {
      reject('bad input');
    }, message),
    { kind: 'reject', reason: 'bad input' },
  );
});

test('a throw without a decision reads as threw; a decision before the throw wins, as in the outbox', async () => {
  const boom = new TypeError('boom');
  assert.deepEqual(
    await runHandler(() => {
      throw boom;
    }, message),
    { kind: 'threw', error: boom },
  );
  assert.deepEqual(
    await runHandler((_m, ctx) => {
      ctx.nack({ delayMs: 10 });
      throw boom;
    }, message),
    { kind: 'nack', delayMs: 10, error: boom },
  );
});

test('the first decision wins; a manual handler that forgets to decide is a nack, never an ack', async () => {
  assert.deepEqual(
    await runHandler((_m, ctx) => {
      ctx.reject('first');
      ctx.ack();
    }, message),
    { kind: 'reject', reason: 'first' },
  );
  assert.deepEqual(await runHandler(() => undefined, message, { ackPolicy: 'manual' }), { kind: 'nack', forgotten: true });
});

test('ctx.nack with an invalid delay throws the real InvalidOptionError', async () => {
  const decision = await runHandler((_m, ctx) => {
    ctx.nack({ delayMs: -1 });
  }, message);
  assert.equal(decision.kind, 'threw');
  assert.ok(decision.kind === 'threw' && decision.error instanceof InvalidOptionError);
});

test('testMessage: the body goes through the envelope as a row would (a Date becomes its ISO text)', () => {
  const at = new Date('2030-01-02T03:04:05.000Z');
  const m = testMessage('q', { at, n: 1 }, { deliveriesCount: 3, orderingKey: 'k' });
  assert.deepEqual(m.body, { at: at.toISOString(), n: 1 });
  assert.equal(m.headers['content-type'], 'application/json');
  assert.equal(m.correlationId, m.headers['correlation-id']);
  assert.equal(m.deliveriesCount, 3);
  assert.equal(m.orderingKey, 'k');
  assert.equal(testMessage('q', 'text').body, 'text');
  const withHeaders = testMessage('q', 1, { headers: { tenant: 't1' }, correlationId: 'c-1' });
  assert.deepEqual(withHeaders.headers, { tenant: 't1', 'content-type': 'application/json', 'correlation-id': 'c-1' });
  assert.equal(withHeaders.correlationId, 'c-1');
});

test('ctx.publish follow-ups are recorded with the cause of the message handled; ctx.stats too', async () => {
  const handled = testMessage('order.created', { orderId: 7 }, { id: '42', correlationId: 'conv-1' });
  const { ctx, decision, published, stats } = createHandlerContext({ message: handled });
  await ctx.publish('invoice.requested', { orderId: 7 });
  ctx.stats.incr('invoices-requested');
  assert.deepEqual(decision(), { kind: 'ack' });
  assert.equal(published.length, 1);
  assert.equal(published[0]?.queue, 'invoice.requested');
  assert.equal(published[0]?.options.correlationId, 'conv-1');
  assert.equal(published[0]?.options.headers?.['causation-id'], '42');
  assert.deepEqual(
    stats.map((s) => [s.kind, s.key, s.value]),
    [['counter', 'invoices_requested', 1]],
  );
});

test('an aborted signal reaches ctx.signal', () => {
  const controller = new AbortController();
  const { ctx } = createHandlerContext({ signal: controller.signal });
  assert.equal(ctx.signal.aborted, false);
  controller.abort(new Error('shutdown'));
  assert.equal(ctx.signal.aborted, true);
});

test('ctx.publish runs the checks of the real one: options, queue, the body encoded; a refused follow-up is not recorded', async () => {
  const { ctx, published } = createHandlerContext({ message });
  await assert.rejects(ctx.publish('invoice.requested', { total: 10n }), UnencodableBodyError);
  await assert.rejects(ctx.publish('', 1), /queue: expected a non-empty string/);
  await assert.rejects(
    ctx.publish('invoice.requested', 1, { activateInMs: -1 }),
    /activateInMs: expected a number of milliseconds/,
  );
  await assert.rejects(ctx.publish('invoice.requested', 1, { delayMs: 5 } as never), (error: unknown) => {
    assert.ok(error instanceof InvalidOptionError);
    assert.equal(error.option, 'delayMs');
    return true;
  });
  assert.equal(published.length, 0);
  // A handler that awaits a refused follow-up throws what the real one would.
  const decision = await runHandler(async (_m, { publish }) => {
    await publish('invoice.requested', () => 'not a body');
  }, message);
  assert.ok(decision.kind === 'threw' && decision.error instanceof UnencodableBodyError);
});

test("ctx.publish validates against the queue's schema, as the Outbox's `schemas` does", async () => {
  const schemas = { 'invoice.requested': z.object({ orderId: z.number() }) };
  const { ctx, published } = createHandlerContext({ message, schemas });
  await assert.rejects(ctx.publish('invoice.requested', { orderId: 'seven' }), InvalidBodyError);
  await ctx.publish('invoice.requested', { orderId: 7 });
  await ctx.publish('other.queue', 'no schema, not checked');
  assert.deepEqual(
    published.map((p) => p.body),
    [{ orderId: 7 }, 'no schema, not checked'],
  );
  assert.throws(() => createHandlerContext({ schemas: 'nope' as never }), /schemas: expected an object of queue name/);
});

test('options are checked as the real subscribe checks them: an unknown key, a wrong ackPolicy, a bad subscriber, signal or logger throw', async () => {
  const refused = (options: unknown, option: string) => {
    assert.throws(
      () => createHandlerContext(options as never),
      (error: unknown) => {
        assert.ok(error instanceof InvalidOptionError);
        assert.equal(error.option, option);
        return true;
      },
    );
  };
  // 'Manual' behaved as nack_on_error: a forgotten decision was an ack, where subscribe() refuses it.
  refused({ ackPolicy: 'Manual' }, 'ackPolicy');
  refused({ subscribr: 'billing' }, 'subscribr');
  refused({ subscriber: '' }, 'subscriber');
  refused({ signal: 'abort' }, 'signal');
  refused({ logger: {} }, 'logger');
  refused({ message: 'order.created' }, 'message');
  refused('manual', 'options');
  await assert.rejects(runHandler('not a handler' as never, message), /handler: expected a function/);
  await assert.rejects(
    runHandler(() => undefined, message, { ackPolicy: 'Manual' } as never),
    /ackPolicy: expected 'nack_on_error' \| 'reject_on_error' \| 'manual', got "Manual"/,
  );
});

test("ctx.stats entries name the message's queue, as a real delivery's do", () => {
  const { ctx, stats } = createHandlerContext({ message, subscriber: 'billing' });
  ctx.stats.incr('seen');
  assert.deepEqual(
    stats.map((s) => [s.subscriber, s.queue]),
    [['billing', 'order.created']],
  );
});
