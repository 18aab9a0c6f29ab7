/**
 * outbox.relay() (architecture/relay.md): a row is deleted only after the broker confirmed it, a
 * refusal ends it into the DLQ with the broker's reason, other failures retry, a key's rows go out
 * one at a time, ping() reports a sink that is down, stop() closes the sink. The broker here is a
 * real HTTP server behind the real webhook sink.
 */
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';

import { ConstantRetry, InvalidOptionError, RELAY_DEFAULTS, type RelaySink } from '../../src/index.js';
import { webhookSink } from '../../src/relay/index.js';
import { relaySubscribeOptions } from '../../src/relay/relay-options.js';
import type { RetryAfterFloor } from '../../src/relay/retry-after.js';
import { useTestDatabase } from '../support/database.js';
import { EventLog } from '../support/events.js';
import { outboxFactory } from '../support/outboxes.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';
import { WebhookReceiver } from '../support/webhook-receiver.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

let receiver: WebhookReceiver;
before(async () => {
  receiver = await WebhookReceiver.start();
});
after(async () => {
  await receiver.stop();
});

async function rows(table: string): Promise<{ body: string; attempts: number }[]> {
  const result = await db.pool.query<{ body: string; attempts: number }>(
    `SELECT convert_from(payload, 'UTF8') AS body, attempts_count AS attempts FROM ${table} ORDER BY id`,
  );
  return result.rows;
}

describe('outbox.relay', () => {
  test('a committed row reaches the broker and is deleted only once the broker confirmed it', async () => {
    const table = 'relay_confirm';
    const log = new EventLog();
    const outbox = newOutbox({ pool: db.pool, table, recorder: log.recorder });
    await outbox.migrate();
    const held: ServerResponse[] = [];
    receiver.answer = (_request, response) => {
      held.push(response);
    };
    outbox.relay('orders', webhookSink({ url: receiver.url('/hooks/{queue}') }), FAST_POLL);
    outbox.start();
    await inTransaction(db.pool, (client) =>
      outbox.publish(client, 'orders', { order: 1 }, { correlationId: 'corr-1', orderingKey: 'o-1' }),
    );
    await waitFor(() => held.length === 1, { what: 'the broker received the row' });
    const [request] = receiver.requests.slice(-1);
    assert.equal(request?.path, '/hooks/orders');
    assert.deepEqual(JSON.parse(request?.body.toString() ?? ''), { order: 1 });
    assert.equal(request?.headers['correlation-id'], 'corr-1');
    assert.match(String(request?.headers['idempotency-key']), new RegExp(`^${table}:[0-9a-f]{12}:\\d+$`));
    assert.equal((await rows(table)).length, 1, 'not deleted while the broker has not confirmed');
    held[0]?.writeHead(200).end();
    await waitFor(async () => (await rows(table)).length === 0, { what: 'deleted after the confirm' });
    await outbox.stop();
    const relayed = log.of('relayed');
    assert.equal(relayed.length, 1);
    assert.equal(relayed[0]?.outcome, 'confirmed');
    assert.equal(relayed[0]?.sink, 'webhook');
    assert.equal(relayed[0]?.subscriber, 'relay:webhook');
    assert.ok((relayed[0]?.lagSeconds ?? -1) >= 0);
    await waitFor(() => log.of('relay_batch').length === 1, { what: 'the batch event' });
    assert.deepEqual(
      log.of('relay_batch').map((e) => [e.messages, e.confirmed, e.refused, e.failed]),
      [[1, 1, 0, 0]],
    );
  });

  test("a refusal ends the row in the DLQ with the broker's reason; a failure retries and keeps the row", async () => {
    const table = 'relay_refusal';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    let unavailable = 2;
    receiver.answer = (request, response) => {
      const body = request.body.toString();
      if (body.includes('poison')) response.writeHead(422).end('schema violation: field "amount" missing');
      else if (unavailable-- > 0) response.writeHead(503).end('try later');
      else response.writeHead(204).end();
    };
    outbox.relay('payments', webhookSink({ url: receiver.url('/pay') }), {
      ...FAST_POLL,
      retry: new ConstantRetry({ delayMs: 10 }),
    });
    outbox.start();
    await inTransaction(db.pool, async (client) => {
      await outbox.publish(client, 'payments', 'poison');
      await outbox.publish(client, 'payments', 'fine');
    });
    await waitFor(async () => (await rows(table)).length === 0, { what: 'both rows ended' });
    const dead = (await outbox.dlq.list({ queue: 'payments' })).rows;
    assert.equal(dead.length, 1);
    assert.equal(dead[0]?.failureReason, 'rejected');
    assert.match(dead[0]?.lastException ?? '', /422[\s\S]*schema violation: field "amount" missing/);
    assert.equal(dead[0]?.lastExceptionType, 'WebhookRefusedError');
    assert.ok(unavailable < 0, 'the 503s were retried until the broker took the row');
    await outbox.stop();
  });

  test("a receiver's Retry-After is waited for: the row is not sent again before it, whatever the strategy says", async () => {
    // Before, the relay's strategy alone decided: a 429 asking for 30 s was sent again after 10 ms
    // here (1 s by default), refused again, and counted against the sender's limit each time.
    const table = 'relay_retry_after';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    receiver.answer = (_request, response) => {
      response.writeHead(429, { 'retry-after': '30' }).end('slow down');
    };
    outbox.relay('throttled', webhookSink({ url: receiver.url('/t') }), {
      ...FAST_POLL,
      retry: new ConstantRetry({ delayMs: 10 }),
    });
    outbox.start();
    await inTransaction(db.pool, (client) => outbox.publish(client, 'throttled', { n: 1 }));
    await waitFor(async () => (await rows(table))[0]?.attempts === 1, { what: 'the 429 recorded as an attempt' });
    const { rows: due } = await db.pool.query<{ wait: number }>(
      `SELECT extract(epoch FROM next_attempt_at - last_attempt_at)::float8 AS wait FROM ${table}`,
    );
    await outbox.stop();
    assert.ok((due[0]?.wait ?? 0) >= 29, `scheduled ${due[0]?.wait} s after the attempt, not the 30 s asked`);
    assert.equal((await rows(table))[0]?.attempts, 1, 'not sent again');
  });

  test('a sink that ignores the abort signal: the delivery is reported failed at its timeout, its batch event comes, stop() is bounded', async () => {
    // Review finding: the relay awaited the send itself, so a custom sink that never settled held
    // the report and the batch's event for good, and a late success read as confirmed.
    const table = 'relay_ignores_signal';
    const log = new EventLog();
    const outbox = newOutbox({ pool: db.pool, table, recorder: log.recorder });
    await outbox.migrate();
    const deaf: RelaySink = { name: 'deaf', send: () => new Promise<void>(() => undefined), close: () => Promise.resolve() };
    outbox.relay('orders', deaf, { ...FAST_POLL, handlerTimeoutMs: 300, retry: new ConstantRetry({ delayMs: 60_000 }) });
    outbox.start();
    await inTransaction(db.pool, (client) => outbox.publish(client, 'orders', { order: 1 }));
    await waitFor(() => log.of('relayed').length === 1, { what: 'the delivery reported', timeoutMs: 10_000 });
    assert.equal(log.of('relayed')[0]?.outcome, 'failed');
    await waitFor(() => log.of('relay_batch').length === 1, { what: 'the batch event' });
    assert.deepEqual(
      log.of('relay_batch').map((e) => [e.messages, e.confirmed, e.failed]),
      [[1, 0, 1]],
    );
    assert.equal((await rows(table)).length, 1, 'kept for its retry');
    await outbox.stop();
  });

  test("a key's rows go to the broker one at a time, in order; other keys in parallel", async () => {
    const table = 'relay_ordering';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    const inFlight = new Map<string, number>();
    const overlaps: string[] = [];
    const order = new Map<string, number[]>();
    let maxConcurrent = 0;
    let concurrent = 0;
    receiver.answer = (request, response) => {
      const { key, seq } = JSON.parse(request.body.toString()) as { key: string; seq: number };
      if ((inFlight.get(key) ?? 0) > 0) overlaps.push(`${key}#${String(seq)}`);
      inFlight.set(key, (inFlight.get(key) ?? 0) + 1);
      concurrent += 1;
      maxConcurrent = Math.max(maxConcurrent, concurrent);
      // Answered on a later turn, so sends of other keys can overlap this one.
      setTimeout(() => {
        inFlight.set(key, (inFlight.get(key) ?? 1) - 1);
        concurrent -= 1;
        order.set(key, [...(order.get(key) ?? []), seq]);
        response.writeHead(200).end();
      }, 2);
    };
    const keys = ['a', 'b', 'c', 'd'];
    await inTransaction(db.pool, async (client) => {
      for (const key of keys) {
        await outbox.publishBatch(
          client,
          'events',
          Array.from({ length: 25 }, (_, seq) => ({ key, seq })),
          { orderingKey: key },
        );
      }
    });
    outbox.relay('events', webhookSink({ url: receiver.url('/e') }), FAST_POLL);
    outbox.start();
    await waitFor(async () => (await rows(table)).length === 0, { what: 'every row relayed' });
    await outbox.stop();
    assert.deepEqual(overlaps, []);
    for (const key of keys)
      assert.deepEqual(
        order.get(key),
        Array.from({ length: 25 }, (_, seq) => seq),
        `key ${key} in order`,
      );
    assert.ok(maxConcurrent > 1, 'keys were sent in parallel');
  });

  test('ping() is false while a sink reports its broker down; stop() closes the sink', async () => {
    const table = 'relay_health';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    let up = true;
    let closed = 0;
    // A sink of our own making: the contract says a user may write one; its broker is the receiver.
    const inner = webhookSink({ url: receiver.url('/h') });
    const sink: RelaySink = {
      name: 'custom',
      send: (message, context) => inner.send(message, context),
      check: () => Promise.resolve(up),
      close: async () => {
        closed += 1;
        await inner.close();
      },
    };
    outbox.relay('q', sink, FAST_POLL);
    outbox.start();
    assert.equal(await outbox.ping(), true);
    up = false;
    assert.equal(await outbox.ping(), false);
    up = true;
    assert.equal(await outbox.ping(), true);
    await outbox.stop();
    assert.equal(closed, 1);
  });

  test('the relay sends the stored bytes: a body its content type cannot parse still goes out, and does not hold its key', async () => {
    const table = 'relay_raw_bytes';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    const bodies: string[] = [];
    receiver.answer = (request, response) => {
      bodies.push(request.body.toString());
      response.writeHead(200).end();
    };
    await inTransaction(db.pool, async (client) => {
      const json = { 'content-type': 'application/json' };
      await outbox.publish(client, 'raw', Buffer.from('{"truncated":'), { orderingKey: 'k', headers: json });
      await outbox.publish(client, 'raw', { fine: true }, { orderingKey: 'k' });
    });
    outbox.relay('raw', webhookSink({ url: receiver.url('/raw') }), FAST_POLL);
    outbox.start();
    await waitFor(async () => (await rows(table)).length === 0, { what: 'both rows relayed' });
    await outbox.stop();
    assert.deepEqual(bodies, ['{"truncated":', '{"fine":true}']);
  });

  test("a refusal is known by its code too (a sink built against the other module format's class)", async () => {
    const table = 'relay_refusal_code';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    // A sink of our own: its refusal is not this build's SinkRefusedError, as with a CommonJS sink.
    const sink: RelaySink = {
      name: 'foreign',
      send: () =>
        Promise.reject(
          Object.assign(new Error('foreign refused the message: no route'), { code: 'SINK_REFUSED', reason: 'no route' }),
        ),
      close: () => Promise.resolve(),
    };
    outbox.relay('f', sink, FAST_POLL);
    outbox.start();
    await inTransaction(db.pool, (client) => outbox.publish(client, 'f', 'x'));
    await waitFor(async () => (await outbox.dlq.list({ queue: 'f' })).rows.length === 1, { what: 'dead-lettered at once' });
    const [dead] = (await outbox.dlq.list({ queue: 'f' })).rows;
    assert.equal(dead?.failureReason, 'rejected');
    assert.equal(dead?.attemptsCount, 1);
    await outbox.stop();
  });

  test('an option passed as undefined keeps the relay default, not the subscription one', () => {
    const sink = webhookSink({ url: receiver.url('/x') });
    const options = relaySubscribeOptions(sink, { retry: undefined, concurrency: undefined });
    assert.equal((options.retry as RetryAfterFloor).inner, RELAY_DEFAULTS.retry);
    assert.equal(options.concurrency, RELAY_DEFAULTS.concurrency);
  });

  test('bad sinks and options are refused, naming what is wrong', () => {
    const outbox = newOutbox({ pool: db.pool, table: 'relay_bad' });
    const sink = webhookSink({ url: receiver.url('/x') });
    const refused = (call: () => unknown, option: string) => {
      assert.throws(call, (error: unknown) => error instanceof InvalidOptionError && error.option === option);
    };
    refused(() => outbox.relay('q', {} as RelaySink), 'sink');
    refused(() => outbox.relay('q', { ...sink, name: 'has space' }), 'sink');
    refused(() => outbox.relay('q', sink, { ackPolicy: 'manual' } as never), 'ackPolicy');
    refused(() => outbox.relay('q', sink, { concurrency: 0 }), 'concurrency');
    refused(() => outbox.relay('q', sink, { lease: 'row-lock' }), 'lease');
    refused(() => outbox.relay('q', sink, { transactional: true }), 'transactional');
    refused(() => outbox.relay('', sink), 'queues');
  });
});
