/**
 * outbox.relay() through rabbitmqSink() to a real RabbitMQ (test/support/rabbitmq-server.ts): rows
 * published in transactions arrive at the broker and are consumed back; the broker restarted under
 * a relay loses nothing; a refusal ends the row in the DLQ with the broker's reason.
 * architecture/relay.md, "RabbitMQ sink".
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test, type TestContext } from 'node:test';

import amqplib, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';

import { ConstantRetry } from '../../src/index.js';
import { type RabbitmqSink, rabbitmqSink } from '../../src/relay/index.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { type RabbitmqServer, startRabbitmq } from '../support/rabbitmq-server.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

let broker: RabbitmqServer | undefined;
let skip: string | undefined;
let admin: ChannelModel | undefined;

before(async () => {
  const started = await startRabbitmq();
  if ('skip' in started) skip = started.skip;
  else broker = started;
});

after(async () => {
  await admin?.close().catch(() => undefined);
  await broker?.close();
});

function brokerFor(t: TestContext): RabbitmqServer | undefined {
  if (broker === undefined) t.skip(skip);
  return broker;
}

async function adminChannel(): Promise<Channel> {
  if (admin === undefined) {
    admin = await amqplib.connect((broker as RabbitmqServer).url);
    admin.on('error', () => undefined);
    admin.on('close', () => {
      admin = undefined;
    });
  }
  const channel = await admin.createChannel();
  channel.on('error', () => undefined);
  return channel;
}

function unique(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

async function durableQueue(name: string): Promise<void> {
  const channel = await adminChannel();
  await channel.assertQueue(name, { durable: true });
  await channel.close();
}

/** Every message in `queue` now, in queue order. */
async function consumeAll(queue: string): Promise<ConsumeMessage[]> {
  const channel = await adminChannel();
  const { messageCount } = await channel.checkQueue(queue);
  const out: ConsumeMessage[] = [];
  if (messageCount > 0) {
    let done: () => void = () => undefined;
    const all = new Promise<void>((resolve) => (done = resolve));
    await channel.prefetch(1000);
    await channel.consume(queue, (message) => {
      if (message === null) return;
      out.push(message);
      channel.ack(message);
      if (out.length === messageCount) done();
    });
    await all;
  }
  await channel.close();
  return out;
}

async function rowCount(table: string): Promise<number> {
  const result = await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
  return Number(result.rows[0]?.n);
}

/** Publishes `count` rows in transactions of 100: payload {key, seq}, keys round-robin. */
async function publishRows(outbox: ReturnType<typeof newOutbox>, queue: string, count: number, keys: number): Promise<void> {
  for (let start = 0; start < count; start += 100) {
    await inTransaction(db.pool, async (client) => {
      for (let seq = start; seq < Math.min(count, start + 100); seq += 1) {
        const key = `key-${seq % keys}`;
        await outbox.publish(
          client,
          queue,
          { key, seq },
          { correlationId: `corr-${seq}`, orderingKey: key, headers: { 'x-seq': String(seq) } },
        );
      }
    });
  }
}

describe('outbox.relay → rabbitmqSink → RabbitMQ', () => {
  test('committed rows arrive with their bodies, headers, correlation and message ids, in order per key; the table empties', async (t) => {
    if (brokerFor(t) === undefined) return;
    const table = 'relay_rmq_roundtrip';
    const queue = unique('orders');
    await durableQueue(queue);
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    const sink: RabbitmqSink = rabbitmqSink({ url: (broker as RabbitmqServer).url });
    outbox.relay(queue, sink, FAST_POLL);
    outbox.start();
    await publishRows(outbox, queue, 1_000, 25);
    await waitFor(async () => (await rowCount(table)) === 0, { timeoutMs: 60_000, what: 'every row relayed and deleted' });
    assert.equal(await outbox.ping(), true);
    await outbox.stop();

    const consumed = await consumeAll(queue);
    assert.equal(consumed.length, 1_000);
    const lastSeq = new Map<string, number>();
    for (const message of consumed) {
      const body = JSON.parse(message.content.toString()) as { key: string; seq: number };
      const { properties } = message;
      assert.match(String(properties.messageId), new RegExp(`^${table}:[0-9a-f]{12}:\\d+$`));
      assert.equal(properties.correlationId, `corr-${body.seq}`);
      assert.equal(properties.contentType, 'application/json');
      const headers = properties.headers as Record<string, unknown>;
      assert.equal(headers['x-seq'], String(body.seq));
      assert.equal(headers['correlation-id'], `corr-${body.seq}`);
      assert.ok(body.seq > (lastSeq.get(body.key) ?? -1), `key ${body.key}: ${body.seq} after ${lastSeq.get(body.key)}`);
      lastSeq.set(body.key, body.seq);
    }
    assert.equal(sink.stats.confirmed, 1_000);
  });

  test('the broker restarted mid-relay: ping() says down meanwhile, then every row arrives (duplicates counted), none lost', async (t) => {
    const server = brokerFor(t);
    if (server === undefined) return;
    const table = 'relay_rmq_restart';
    const queue = unique('restart');
    await durableQueue(queue);
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    const total = 3_000;
    await publishRows(outbox, queue, total, 50);
    const sink = rabbitmqSink({ url: server.url, maxReconnectDelayMs: 500 });
    // A short backoff: the outage is seconds, and the test waits for the rows to come back.
    outbox.relay(queue, sink, { ...FAST_POLL, retry: new ConstantRetry({ delayMs: 200 }) });
    outbox.start();
    await waitFor(async () => (await rowCount(table)) <= total - 500, { timeoutMs: 60_000, what: '500 rows relayed' });
    await server.stop();
    await waitFor(async () => !(await outbox.ping()), { what: 'ping() false while the broker is down' });
    const left = await rowCount(table);
    assert.ok(left > 0, 'rows wait in the table while the broker is down');
    await server.start();
    await waitFor(async () => (await rowCount(table)) === 0, { timeoutMs: 60_000, what: 'the rest relayed after the restart' });
    assert.equal(await outbox.ping(), true);
    await outbox.stop();

    const consumed = await consumeAll(queue);
    const seen = new Set(consumed.map((message) => String(message.properties.messageId)));
    assert.equal(seen.size, total, `${total - seen.size} rows lost`);
    t.diagnostic(
      `restart mid-relay: ${consumed.length - seen.size} duplicates of ${total}, ${sink.stats.connections} connections`,
    );
    // A duplicate is a row the broker enqueued whose confirm was lost: at most the 64 sends in flight.
    assert.ok(consumed.length - seen.size <= 64);
  });

  test("a refusal (unroutable, missing exchange) ends the row in the DLQ with the broker's reason; routable rows go on", async (t) => {
    if (brokerFor(t) === undefined) return;
    const table = 'relay_rmq_refusal';
    const routable = unique('routable');
    await durableQueue(routable);
    const unroutable = unique('nowhere');
    const exchangeless = unique('exchangeless');
    const missingExchange = unique('missing');
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    const sink = rabbitmqSink({
      url: (broker as RabbitmqServer).url,
      exchange: (message) => (message.queue === exchangeless ? missingExchange : ''),
    });
    outbox.relay([routable, unroutable, exchangeless], sink, FAST_POLL);
    outbox.start();
    await inTransaction(db.pool, async (client) => {
      await outbox.publish(client, unroutable, { n: 1 });
      await outbox.publish(client, exchangeless, { n: 2 });
      await outbox.publish(client, routable, { n: 3 });
    });
    await waitFor(async () => (await rowCount(table)) === 0, { what: 'every row ended' });
    const dead = (await outbox.dlq.list({})).rows;
    await outbox.stop();
    const byQueue = new Map(dead.map((row) => [row.queue, row]));
    assert.equal(dead.length, 2);
    assert.equal(byQueue.get(unroutable)?.failureReason, 'rejected');
    assert.match(
      byQueue.get(unroutable)?.lastException ?? '',
      /312 NO_ROUTE: the default exchange routes routing key "nowhere-\w+" to no queue/,
    );
    assert.equal(byQueue.get(exchangeless)?.failureReason, 'rejected');
    assert.match(byQueue.get(exchangeless)?.lastException ?? '', /NOT_FOUND - no exchange 'missing-\w+' in vhost '\/'/);
    assert.equal((await consumeAll(routable)).length, 1);
  });
});
