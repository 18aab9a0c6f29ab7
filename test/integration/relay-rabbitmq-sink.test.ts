/**
 * rabbitmqSink() against a real RabbitMQ (Debian's rabbitmq-server, started by
 * test/support/rabbitmq-server.ts as a private node on free ports, its data in a temp dir): messages
 * consumed back with amqplib and compared, the broker stopped and restarted under load, a connection
 * that goes silent, its refusals, and bad options. architecture/relay.md, "RabbitMQ sink".
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { getEventListeners } from 'node:events';
import { after, before, describe, test, type TestContext } from 'node:test';

import amqplib, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';

import { InvalidOptionError, MissingPeerDependencyError, SinkRefusedError, SinkUnavailableError } from '../../src/errors.js';
import type { RelayMessage, RelaySink } from '../../src/relay/sink.js';
import { loadPeer } from '../../src/relay/sinks/load-peer.js';
import type { AmqplibModule } from '../../src/relay/sinks/rabbitmq-connector.js';
import { resolveRabbitmqOptions } from '../../src/relay/sinks/rabbitmq-options.js';
import { headerTableBytes, MAX_HEADER_TABLE_BYTES, publishOptions } from '../../src/relay/sinks/rabbitmq-properties.js';
import { RabbitmqSession } from '../../src/relay/sinks/rabbitmq-session.js';
import { type RabbitmqSink, rabbitmqSink, type RabbitmqSinkOptions } from '../../src/relay/sinks/rabbitmq-sink.js';
import { createRabbitmqSink } from '../../src/relay/sinks/rabbitmq-sink-core.js';
import { freePort, type RabbitmqServer, startRabbitmq } from '../support/rabbitmq-server.js';
import { relayMessage, relayMessages, sendInKeyOrder } from '../support/relay-messages.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait-for.js';

let broker: RabbitmqServer | undefined;
let skip: string | undefined;
let admin: ChannelModel | undefined;
const sinks: RabbitmqSink[] = [];

before(async () => {
  const started = await startRabbitmq();
  if ('skip' in started) {
    skip = started.skip;
    return;
  }
  broker = started;
});

after(async () => {
  await Promise.all(sinks.map((sink) => sink.close()));
  await admin?.close().catch(() => undefined);
  await broker?.close();
});

/** The running broker, or a skip (never in CI: startRabbitmq() throws there instead). */
function brokerFor(t: TestContext): RabbitmqServer | undefined {
  if (broker === undefined) t.skip(skip);
  return broker;
}

function sinkFor(options: Partial<RabbitmqSinkOptions> = {}): RabbitmqSink {
  const sink = rabbitmqSink({ url: (broker as RabbitmqServer).url, ...options });
  sinks.push(sink);
  return sink;
}

/** A channel of the test's own connection (dialled again after a broker restart). */
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

/** Every message in `queue` now, in queue order (one consumer: the broker keeps publish order). */
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

function assertSame(consumed: ConsumeMessage, sent: RelayMessage): void {
  assert.ok(consumed.content.equals(sent.payload), `body of ${sent.messageId}`);
  const { properties } = consumed;
  assert.equal(properties.messageId, sent.messageId);
  assert.equal(properties.correlationId, sent.correlationId);
  assert.equal(properties.contentType, sent.headers['content-type']);
  assert.equal(properties.deliveryMode, 2, 'persistent');
  assert.equal(properties.timestamp, Math.floor(sent.createdAt.getTime() / 1000));
  const headers = properties.headers as Record<string, unknown>;
  for (const [name, value] of Object.entries(sent.headers))
    assert.equal(headers[name], value, `header ${name} of ${sent.messageId}`);
  assert.equal(headers['correlation-id'], sent.correlationId);
}

describe('rabbitmqSink: 10,000 messages', () => {
  test('arrive with body, headers and properties intact, in order per ordering key (64 sends in flight)', async (t) => {
    if (brokerFor(t) === undefined) return;
    const queue = unique('orders');
    await durableQueue(queue);
    const messages = relayMessages(10_000, { queue, keys: 200, maxBytes: 2048 });
    const sink = sinkFor();
    const started = performance.now();
    const report = await sendInKeyOrder(sink, messages, { concurrency: 64 });
    const seconds = (performance.now() - started) / 1000;
    t.diagnostic(`10,000 confirmed sends in ${seconds.toFixed(2)} s (${Math.round(10_000 / seconds)} msg/s at 64 in flight)`);
    assert.equal(report.failures.length, 0);

    const consumed = await consumeAll(queue);
    assert.equal(consumed.length, messages.length);
    const sent = new Map(messages.map((message) => [message.messageId, message]));
    const seenPerKey = new Map<string, string[]>();
    for (const message of consumed) {
      const original = sent.get(message.properties.messageId as string);
      assert.ok(original !== undefined, `unknown message ${message.properties.messageId}`);
      assertSame(message, original);
      sent.delete(original.messageId);
      const key = original.orderingKey as string;
      const seen = seenPerKey.get(key) ?? [];
      seen.push(original.id);
      seenPerKey.set(key, seen);
    }
    assert.equal(sent.size, 0, 'every message arrived once');
    for (const [key, ids] of seenPerKey) {
      const expected = messages.filter((message) => message.orderingKey === key).map((message) => message.id);
      assert.deepEqual(ids, expected, `order of key ${key}`);
    }
  });

  test('flow control: with the socket full, sends wait for drain (bounded buffer), then every message arrives intact', async (t) => {
    const server = brokerFor(t);
    if (server === undefined) return;
    const queue = unique('large');
    await durableQueue(queue);
    const proxy = await TcpProxy.start(server.port);
    t.after(() => proxy.close());
    const sink = sinkFor({ url: proxy.via(server.url), confirmTimeoutMs: 60_000 });
    const [opening, ...messages] = relayMessages(41, { queue, keys: 41 }).map((message) => ({
      ...message,
      payload: randomBytes(2 * 1024 * 1024),
    }));
    await sink.send(opening as RelayMessage, { signal: new AbortController().signal });
    // The broker stops reading: 40 × 2 MiB (680 frames) cannot all go into the socket, nor into the
    // channel's buffer (256 frames), so publish() says "full" and the later sends wait for 'drain'.
    proxy.freeze();
    const sending = Promise.all(messages.map((message) => sink.send(message, { signal: new AbortController().signal })));
    await waitFor(() => sink.stats.drainWaits > 0, { what: 'a send waiting for drain' });
    proxy.thaw();
    await sending;
    const consumed = await consumeAll(queue);
    assert.equal(consumed.length, 41);
    const byId = new Map(consumed.map((message) => [message.properties.messageId as string, message]));
    for (const message of messages) assertSame(byId.get(message.messageId) as ConsumeMessage, message);
  });
});

describe('rabbitmqSink: one signal shared by many sends', () => {
  test('adds one abort listener, not one per send (no MaxListenersExceededWarning), and all are confirmed', async (t) => {
    if (brokerFor(t) === undefined) return;
    const queue = unique('shared');
    await durableQueue(queue);
    const sink = sinkFor();
    const signal = new AbortController().signal;
    const sending = Promise.all(relayMessages(100, { queue, keys: 100 }).map((message) => sink.send(message, { signal })));
    await waitFor(() => getEventListeners(signal, 'abort').length > 0, { what: 'the sends watching the signal' });
    assert.equal(getEventListeners(signal, 'abort').length, 1);
    await sending;
    assert.equal((await consumeAll(queue)).length, 100);
  });
});

describe('rabbitmqSink: the broker goes away', () => {
  test('stopped mid-stream and restarted: sends fail retryably and within their bound, then succeed without a new sink; none lost', async (t) => {
    const server = brokerFor(t);
    if (server === undefined) return;
    const queue = unique('restart');
    await durableQueue(queue);
    const confirmTimeoutMs = 3_000;
    const sink = sinkFor({ confirmTimeoutMs, connectTimeoutMs: 2_000, maxReconnectDelayMs: 500 });
    const messages = relayMessages(3_000, { queue, keys: 50, maxBytes: 256 });
    let confirmed = 0;
    let failed = 0;
    let downAt: number | undefined;
    let upAt: number | undefined;
    let firstConfirmAfterUp: number | undefined;
    const outage = (async () => {
      await waitFor(() => confirmed >= 500, { timeoutMs: 60_000, what: '500 confirmed before the stop' });
      await server.stop();
      downAt = performance.now();
      // The client may take a moment to read the broker's close: a state to wait for, not a race to lose.
      await waitFor(async () => !(await sink.check()), { what: 'check() false while the broker is down' });
      // Sends meet the outage (failures are recorded by the driver) before the broker comes back.
      await waitFor(() => failed >= 20, { timeoutMs: 30_000, what: 'sends failing during the outage' });
      await server.start();
      upAt = performance.now();
    })();
    const sending = sendInKeyOrder(sink, messages, {
      concurrency: 16,
      retry: () => {
        failed += 1;
        return true;
      },
      retryDelayMs: 50,
      onConfirmed: () => {
        confirmed += 1;
        if (upAt !== undefined) firstConfirmAfterUp ??= performance.now();
      },
    });
    const [report] = await Promise.all([sending, outage]);
    assert.ok(report.failures.length >= 20);
    for (const failure of report.failures) {
      assert.ok(!(failure instanceof SinkRefusedError), `a refusal during the outage: ${failure.message}`);
      assert.ok(failure instanceof SinkUnavailableError, `retryable and typed: ${failure.name}: ${failure.message}`);
      assert.ok(!failure.message.includes('guest:guest'), 'no credentials in errors');
    }
    // The bound: no send outlived confirmTimeoutMs (plus event-loop slack on a busy machine).
    assert.ok(report.longestSendMs < confirmTimeoutMs + 2_000, `longest send ${Math.round(report.longestSendMs)} ms`);
    assert.equal(await sink.check(), true, 'check() after the restart');

    // Durable queue, persistent messages, confirmed before the stop: all there after the restart.
    const consumed = await consumeAll(queue);
    const counts = new Map<string, number>();
    for (const message of consumed) {
      const id = message.properties.messageId as string;
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    const lost = messages.filter((message) => !counts.has(message.messageId));
    assert.equal(lost.length, 0, `lost: ${lost.map((message) => message.messageId).join(', ')}`);
    const duplicates = consumed.length - counts.size;
    t.diagnostic(
      `restart: ${report.failures.length} failed sends retried, ${duplicates} duplicates (RabbitMQ cannot deduplicate), ` +
        `down ${Math.round((upAt as number) - (downAt as number))} ms, first confirm ${Math.round((firstConfirmAfterUp as number) - (upAt as number))} ms after the broker was up`,
    );
    // A duplicate is a message whose confirm was lost when the connection closed: at most the sends in flight.
    assert.ok(duplicates <= 16, `${duplicates} duplicates, more than the 16 sends in flight`);
  });

  test('a connection that goes silent (half-open) is dropped after confirmTimeoutMs and dialled again; an abort ends a send at once', async (t) => {
    const server = brokerFor(t);
    if (server === undefined) return;
    const queue = unique('silent');
    await durableQueue(queue);
    const proxy = await TcpProxy.start(server.port);
    t.after(() => proxy.close());
    const sink = sinkFor({ url: proxy.via(server.url), confirmTimeoutMs: 1_500 });
    const [first, second, third, fourth] = relayMessages(4, { queue });
    await sink.send(first as RelayMessage, { signal: new AbortController().signal });

    // Frozen: the broker seems to have vanished. An abort ends the send now, with the relay's reason.
    proxy.freeze();
    const controller = new AbortController();
    const aborted = sink.send(second as RelayMessage, { signal: controller.signal });
    const reason = new Error('relay stopping');
    controller.abort(reason);
    await assert.rejects(aborted, (error) => error === reason);
    proxy.thaw();

    // Half-open: the next send waits for a confirm that never comes, then the connection is dropped.
    proxy.dropHalfOpen();
    await assert.rejects(sink.send(third as RelayMessage, { signal: new AbortController().signal }), (error: Error) => {
      assert.ok(error instanceof SinkUnavailableError, error.message);
      assert.match(error.message, /no answer within 1500 ms \(waiting for the confirm\)/);
      return true;
    });
    // The sink dials a new connection by itself (after its backoff pause) and the next send is confirmed.
    await waitFor(() => sink.check(), { timeoutMs: 10_000, what: 'check() true again' });
    await sink.send(fourth as RelayMessage, { signal: new AbortController().signal });
    assert.equal(sink.stats.connections, 2, 'the silent connection was replaced once');

    const ids = (await consumeAll(queue)).map((message) => message.properties.messageId as string);
    assert.ok(ids.includes((first as RelayMessage).messageId));
    assert.ok(ids.includes((fourth as RelayMessage).messageId));
  });

  test('check() asks the broker when nothing was confirmed lately: false for a frozen broker and a half-open connection, which it drops', async (t) => {
    const server = brokerFor(t);
    if (server === undefined) return;
    const queue = unique('probe');
    await durableQueue(queue);
    const proxy = await TcpProxy.start(server.port);
    t.after(() => proxy.close());
    const sink = sinkFor({ url: proxy.via(server.url), connectTimeoutMs: 1_000, maxReconnectDelayMs: 500 });
    await sink.send(relayMessage({ queue }), { signal: new AbortController().signal });
    assert.equal(await sink.check(), true);

    // Frozen (a SIGSTOPped broker, a partition): no send is waiting, so only check() can notice.
    proxy.freeze();
    await waitFor(async () => !(await sink.check()), { what: 'check() false while the broker is frozen' });
    proxy.thaw();
    await waitFor(() => sink.check(), { what: 'check() true once the broker answers again' });

    // Half-open: the idle connection is gone without FIN or RST; heartbeats would take 2 x 60 s.
    proxy.dropHalfOpen();
    await waitFor(async () => !(await sink.check()), { what: 'check() false on the half-open connection' });
    await waitFor(() => sink.check(), { what: 'check() true on a new connection' });
    await sink.send(relayMessage({ queue }), { signal: new AbortController().signal });
    assert.equal(sink.stats.connections, 3, 'the frozen and the half-open connections were each replaced once');
    assert.equal((await consumeAll(queue)).length, 2);
  });

  test('a broker that blocks publishing (memory alarm): check() is false, new sends fail at once, the one in flight is confirmed once it unblocks', async (t) => {
    const server = brokerFor(t);
    if (server === undefined) return;
    const queue = unique('blocked');
    await durableQueue(queue);
    const sink = sinkFor({ confirmTimeoutMs: 60_000 });
    const [first, inFlight, refused, after] = relayMessages(4, { queue });
    await sink.send(first as RelayMessage, { signal: new AbortController().signal });
    // A watermark of 0 raises the memory alarm at once; the broker blocks a connection when it publishes.
    await server.ctl('set_vm_memory_high_watermark', '0');
    t.after(() => server.ctl('set_vm_memory_high_watermark', '0.4'));
    const waiting = sink.send(inFlight as RelayMessage, { signal: new AbortController().signal });
    await waitFor(async () => !(await sink.check()), { what: 'check() false while blocked' });
    await assert.rejects(sink.send(refused as RelayMessage, { signal: new AbortController().signal }), (error: Error) => {
      assert.ok(error instanceof SinkUnavailableError, error.message);
      assert.match(error.message, /the broker blocked publishing \(low on memory\)/);
      return true;
    });
    await server.ctl('set_vm_memory_high_watermark', '0.4');
    await waiting;
    assert.equal(await sink.check(), true);
    await sink.send(after as RelayMessage, { signal: new AbortController().signal });
    const ids = (await consumeAll(queue)).map((message) => message.properties.messageId as string);
    assert.deepEqual(
      ids,
      [first, inFlight, after].map((message) => (message as RelayMessage).messageId),
    );
    assert.equal(sink.stats.connections, 1, 'a blocked connection is kept, not redialled');
  });

  test('a broker that is not there: sends reject retryably, at once, without the password; check() is false', async (t) => {
    if (brokerFor(t) === undefined) return;
    const port = await freePort();
    const sink = sinkFor({ url: `amqp://relay:s3cret-pw@127.0.0.1:${port}/`, connectTimeoutMs: 1_000 });
    const error = await sink.send(relayMessage(), { signal: new AbortController().signal }).then(
      () => assert.fail('sent to nowhere'),
      (caught: unknown) => caught as Error,
    );
    assert.ok(error instanceof SinkUnavailableError, error.message);
    assert.match(error.message, /could not connect to amqp:\/\/relay:\*\*\*@127\.0\.0\.1/);
    assert.ok(!JSON.stringify({ message: error.message, cause: String(error.cause) }).includes('s3cret-pw'));
    // The next send meets the backoff pause: it fails at once, without dialling.
    await assert.rejects(sink.send(relayMessage(), { signal: new AbortController().signal }), /next dial in \d+ ms/);
    assert.equal(await sink.check(), false);
  });

  test('a wrong password is retryable (ACCESS_REFUSED), never echoed', async (t) => {
    const server = brokerFor(t);
    if (server === undefined) return;
    const sink = sinkFor({ url: `amqp://guest:wrong-password-42@127.0.0.1:${server.port}` });
    const error = await sink.send(relayMessage(), { signal: new AbortController().signal }).then(
      () => assert.fail('logged in with a wrong password'),
      (caught: unknown) => caught as Error,
    );
    assert.ok(error instanceof SinkUnavailableError, error.message);
    assert.match(error.message, /ACCESS_REFUSED|ACCESS-REFUSED/);
    assert.ok(!error.message.includes('wrong-password-42'));
    assert.equal(await sink.check(), false);
  });

  test('after close(), sends reject and check() is false', async (t) => {
    const server = brokerFor(t);
    if (server === undefined) return;
    const queue = unique('closed');
    await durableQueue(queue);
    const sink = rabbitmqSink({ url: server.url });
    await sink.send(relayMessage({ queue }), { signal: new AbortController().signal });
    await sink.close();
    await assert.rejects(sink.send(relayMessage({ queue }), { signal: new AbortController().signal }), SinkUnavailableError);
    assert.equal(await sink.check(), false);
  });
});

describe('RabbitmqSession: a close that came before it listened', () => {
  // amqplib handles every frame of one socket read in one loop: a connection close in the same read
  // as the confirm channel's open-ok is emitted before the session exists. The session then took
  // the dead channel for open for good: every publish failed retryably, no redial, until a restart.
  /** A session made on a confirm channel that closed before it: what the race hands the connector. */
  async function sessionOnClosedChannel(server: RabbitmqServer, ended: string[]): Promise<RabbitmqSession> {
    const model = await amqplib.connect(server.url);
    model.on('error', () => undefined);
    const channel = await model.createConfirmChannel();
    await channel.close();
    return new RabbitmqSession(model, channel, String, (_session, error) => {
      ended.push(error.reason);
    });
  }

  test('the first publish on the dead channel ends the session, so the connector dials again', async (t) => {
    const server = brokerFor(t);
    if (server === undefined) return;
    const ended: string[] = [];
    const session = await sessionOnClosedChannel(server, ended);
    assert.equal(session.unusable, undefined, 'nothing told the session');
    await assert.rejects(session.publish('', 'nowhere', Buffer.from('x'), { messageId: 'm1' }), SinkUnavailableError);
    assert.notEqual(session.unusable, undefined, 'the session ended');
    assert.equal(ended.length, 1);
    assert.match(ended[0] ?? '', /the channel refused the publish: .*Channel closed/);
    await session.close();
  });

  test("check()'s round trip on the dead channel ends the session too", async (t) => {
    const server = brokerFor(t);
    if (server === undefined) return;
    const session = await sessionOnClosedChannel(server, []);
    assert.equal(await session.answers(0), false);
    assert.notEqual(session.unusable, undefined);
    await session.close();
  });
});

describe('rabbitmqSink: refusals (SinkRefusedError: the row goes to the DLQ with the reason)', () => {
  const send = (sink: RelaySink, message: RelayMessage): Promise<void> =>
    sink.send(message, { signal: new AbortController().signal });

  test('unroutable (mandatory → basic.return 312 NO_ROUTE), on the default exchange and on a topic exchange', async (t) => {
    if (brokerFor(t) === undefined) return;
    await assert.rejects(send(sinkFor(), relayMessage({ queue: unique('no-such-queue') })), (error: Error) => {
      assert.ok(error instanceof SinkRefusedError, error.message);
      assert.match(error.reason, /^312 NO_ROUTE: the default exchange routes routing key "no-such-queue-\w+" to no queue$/);
      return true;
    });

    const exchange = unique('events');
    const queue = unique('bound');
    const channel = await adminChannel();
    await channel.assertExchange(exchange, 'topic', { durable: true });
    await channel.assertQueue(queue, { durable: true });
    await channel.bindQueue(queue, exchange, 'orders.*');
    await channel.close();
    const sink = sinkFor({ exchange, routingKey: '{queue}.{headers.x-tenant}' });
    // Routed and unrouted sends at once on one channel: each gets its own answer.
    const routed = relayMessages(20, { queue: 'orders', firstId: 100 });
    const unrouted = relayMessages(20, { queue: 'payments', firstId: 200 });
    const results = await Promise.allSettled([...routed, ...unrouted].map((message) => send(sink, message)));
    results.slice(0, 20).forEach((result) => {
      assert.equal(result.status, 'fulfilled');
    });
    for (const result of results.slice(20)) {
      assert.equal(result.status, 'rejected');
      const error = result.reason as Error;
      assert.ok(error instanceof SinkRefusedError, error.message);
      assert.match(
        error.reason,
        new RegExp(`^312 NO_ROUTE: exchange "${exchange}" routes routing key "payments\\.tenant-\\d" to no queue$`),
      );
    }
    assert.equal((await consumeAll(queue)).length, 20);
  });

  test('a missing exchange (404) refuses its rows only; the channel stays up for the others; an exchange declared later is found', async (t) => {
    if (brokerFor(t) === undefined) return;
    const queue = unique('neighbour');
    await durableQueue(queue);
    const missing = unique('missing');
    const sink = sinkFor({
      exchange: (message) => (message.headers['x-route'] === 'missing' ? missing : 'amq.direct'),
      routingKey: queue,
    });
    const channel = await adminChannel();
    await channel.bindQueue(queue, 'amq.direct', queue);
    const good = relayMessages(10, { queue, firstId: 1 });
    const bad = relayMessages(5, { queue, firstId: 50 }).map((message) => ({
      ...message,
      headers: { ...message.headers, 'x-route': 'missing' },
    }));
    const results = await Promise.allSettled([...good, ...bad].map((message) => send(sink, message)));
    results.slice(0, 10).forEach((result, i) => {
      assert.equal(result.status, 'fulfilled', `good ${i}`);
    });
    for (const result of results.slice(10)) {
      const error = (result as PromiseRejectedResult).reason as Error;
      assert.ok(error instanceof SinkRefusedError, String(error));
      assert.match(
        error.reason,
        new RegExp(`exchange "${missing}" does not exist: .*NOT_FOUND - no exchange '${missing}' in vhost '/'`),
      );
    }
    assert.equal((await consumeAll(queue)).length, 10);

    await channel.assertExchange(missing, 'fanout', { durable: false });
    await channel.bindQueue(queue, missing, '');
    await channel.close();
    await send(sink, bad[0] as RelayMessage);
    assert.equal((await consumeAll(queue)).length, 1);
  });

  test("an empty routing key is one: fixed, or a function's answer, to a direct exchange bound with ''", async (t) => {
    // Review finding: routingKey '' was an InvalidOptionError and a function returning '' sent its
    // row to the DLQ, though AMQP routes '' like any key.
    if (brokerFor(t) === undefined) return;
    const queue = unique('empty-key');
    const exchange = unique('empty-key-x');
    await durableQueue(queue);
    const channel = await adminChannel();
    await channel.assertExchange(exchange, 'direct', { durable: false });
    await channel.bindQueue(queue, exchange, '');
    await channel.close();
    await send(sinkFor({ exchange, routingKey: '' }), relayMessage({ queue }));
    await send(sinkFor({ exchange, routingKey: () => '' }), relayMessage({ queue }));
    assert.equal((await consumeAll(queue)).length, 2);
    // A template whose header is empty is still a row without its value: refused.
    await assert.rejects(
      send(sinkFor({ exchange, routingKey: '{headers.route}' }), relayMessage({ queue, headers: { route: '' } })),
      SinkRefusedError,
    );
  });

  test('a row header CC or BCC that is not a list of strings is refused before the broker; its neighbours are sent; a list of strings routes copies', async (t) => {
    // Reproduction (review finding): RabbitMQ closes the channel (406 PRECONDITION_FAILED) on a
    // CC/BCC header that is not an array; the row failed as unavailable and was retried for good,
    // and each attempt failed every send in flight on the channel with it.
    if (brokerFor(t) === undefined) return;
    const queue = unique('cc');
    const copies = unique('cc-copy');
    await durableQueue(queue);
    await durableQueue(copies);
    const sink = sinkFor({ routingKey: queue });
    const good = relayMessages(10, { queue, firstId: 1 });
    const bad = ['CC', 'BCC'].map((header, i) => {
      const [message] = relayMessages(1, { queue, firstId: 50 + i }) as [RelayMessage];
      return { ...message, headers: { ...message.headers, [header]: copies } };
    });
    const results = await Promise.allSettled([...good, ...bad].map((message) => send(sink, message)));
    results.slice(0, 10).forEach((result, i) => {
      assert.equal(result.status, 'fulfilled', `good ${i}: ${String((result as PromiseRejectedResult).reason)}`);
    });
    for (const [i, result] of results.slice(10).entries()) {
      const error = (result as PromiseRejectedResult).reason as Error;
      assert.ok(error instanceof SinkRefusedError, String(error));
      assert.match(error.reason, new RegExp(`header ${i === 0 ? 'CC' : 'BCC'} .* a list of strings`));
    }
    assert.equal((await consumeAll(queue)).length, 10);
    // Written by hand as a JSON array of strings, RabbitMQ's sender-selected distribution: sent.
    const [listed] = relayMessages(1, { queue, firstId: 90 }) as [RelayMessage];
    await send(sink, { ...listed, headers: { ...listed.headers, CC: [copies] } as unknown as Record<string, string> });
    assert.equal((await consumeAll(queue)).length, 1);
    assert.equal((await consumeAll(copies)).length, 1);
  });

  test('what AMQP cannot carry is refused before the broker: payload over maxMessageBytes, a 70 KB header table, a 300-byte routing key', async (t) => {
    if (brokerFor(t) === undefined) return;
    const queue = unique('limits');
    await durableQueue(queue);
    await assert.rejects(
      send(sinkFor({ maxMessageBytes: 1024 }), relayMessage({ queue, payload: Buffer.alloc(1025) })),
      (error: Error) => {
        assert.ok(error instanceof SinkRefusedError);
        assert.match(error.reason, /is 1025 bytes, over maxMessageBytes \(1024\)/);
        return true;
      },
    );
    const big = relayMessage({ queue });
    await assert.rejects(
      send(sinkFor(), { ...big, headers: { ...big.headers, 'x-big': 'x'.repeat(70_000) } }),
      (error: Error) => {
        assert.ok(error instanceof SinkRefusedError, error.message);
        assert.match(error.reason, /cannot be encoded as AMQP/);
        return true;
      },
    );
    // Just over the bound: refused by the sink's own count on every amqplib version (before 2.3.1
    // amqplib cut such a table short and RabbitMQ closed the connection after the publish, so the
    // row was retried for good); at the bound, sent.
    const base = headerTableBytes(publishOptions(big).headers as Record<string, string>);
    const justOver = 'y'.repeat(MAX_HEADER_TABLE_BYTES - base - 6 - 'x-big'.length + 1);
    // amqplib 2.3.1 encodes a table of exactly MAX_HEADER_TABLE_BYTES, and refuses one byte more itself.
    const overBy1 = { ...big, headers: { ...big.headers, 'x-big': justOver } };
    assert.equal(headerTableBytes(publishOptions(overBy1).headers as Record<string, string>), MAX_HEADER_TABLE_BYTES + 1);
    await assert.rejects(send(sinkFor(), overBy1), (error: Error) => {
      assert.ok(error instanceof SinkRefusedError, error.message);
      assert.match(error.reason, /cannot be encoded as AMQP: 65537 bytes as a field table, over the 65536/);
      return true;
    });
    const atBound = { ...big, headers: { ...big.headers, 'x-big': justOver.slice(1) } };
    await send(sinkFor(), { ...atBound, headers: { ...atBound.headers } });
    assert.equal((await consumeAll(queue)).length, 1, 'a table at the bound is sent');
    // A row written by hand may hold other JSON than strings in its headers: counted, and sent.
    const odd = { ...big, headers: { ...big.headers, 'x-number': 5, 'x-null': null } as unknown as Record<string, string> };
    await send(sinkFor(), odd);
    assert.equal((await consumeAll(queue)).length, 1, 'non-string header values are sent');
    await assert.rejects(send(sinkFor({ routingKey: 'k'.repeat(300) }), relayMessage({ queue })), SinkRefusedError);
    // Review finding: a row's exchange over 255 bytes failed amqplib's encoding of the exchange
    // check, which was taken for an outage (retried forever, a channel left open each time), and a
    // row naming an internal exchange closed the connection under every send in flight.
    const routed = sinkFor({ exchange: '{headers.x-exchange}' });
    for (const [exchange, reason] of [
      ['x'.repeat(300), /exchange name is 300 bytes, over AMQP's 255/],
      ['amq.rabbitmq.trace', /internal to RabbitMQ/],
    ] as const) {
      await assert.rejects(send(routed, relayMessage({ queue, headers: { 'x-exchange': exchange } })), (error: Error) => {
        assert.ok(error instanceof SinkRefusedError, error.message);
        assert.match(error.reason, reason);
        return true;
      });
    }
    assert.equal(routed.stats.connections, 0, 'refused before any connection');
    // A template the row cannot fill (compileDestination) is refused too.
    await assert.rejects(send(sinkFor({ routingKey: '{headers.x-missing}' }), relayMessage({ queue })), SinkRefusedError);
    // The same sink still sends what it can: a refusal never breaks the connection.
    const sink = sinkFor();
    await assert.rejects(send(sink, { ...big, headers: { ...big.headers, 'x-big': 'x'.repeat(70_000) } }), SinkRefusedError);
    await send(sink, relayMessage({ queue }));
    assert.equal((await consumeAll(queue)).length, 1);
  });

  test('a correlation id or content type too long for an AMQP property still arrives whole, as a header', async (t) => {
    if (brokerFor(t) === undefined) return;
    const queue = unique('long');
    await durableQueue(queue);
    const long = 'c'.repeat(400);
    const message = relayMessage({
      queue,
      correlationId: long,
      headers: { 'content-type': `application/${'x'.repeat(300)}`, 'correlation-id': long },
    });
    await send(sinkFor(), message);
    const [consumed] = await consumeAll(queue);
    assert.equal(consumed?.properties.correlationId, undefined);
    assert.equal(consumed?.properties.contentType, undefined);
    assert.equal((consumed?.properties.headers as Record<string, unknown>)['correlation-id'], long);
  });
});

describe('rabbitmqSink: options and the optional peer', () => {
  const invalid = (options: unknown, option: string): void => {
    assert.throws(
      () => rabbitmqSink(options as RabbitmqSinkOptions),
      (error: Error) => error instanceof InvalidOptionError && error.option === option,
      `${option} should be named`,
    );
  };

  test('bad options throw InvalidOptionError naming the option', () => {
    invalid(undefined, 'rabbitmqSink options');
    invalid({}, 'url');
    invalid({ url: 'http://guest:guest@127.0.0.1' }, 'url');
    invalid({ url: 'amqp://127.0.0.1', exchnage: 'x' }, 'exchnage');
    invalid({ url: 'amqp://127.0.0.1', exchange: 'orders.{nope}' }, 'exchange');
    invalid({ url: 'amqp://127.0.0.1', exchange: 'e'.repeat(256) }, 'exchange');
    invalid({ url: 'amqp://127.0.0.1', exchange: `${'e'.repeat(256)}{queue}` }, 'exchange');
    invalid({ url: 'amqp://127.0.0.1', exchange: 'amq.rabbitmq.trace' }, 'exchange');
    invalid({ url: 'amqp://127.0.0.1', exchange: 'amq.rabbitmq.{queue}' }, 'exchange');
    for (const exchange of ['e'.repeat(255), 'amq.topic', '{queue}.amq.rabbitmq.x', 'amq.{queue}']) {
      assert.doesNotThrow(() => rabbitmqSink({ url: 'amqp://127.0.0.1', exchange }), exchange);
    }
    invalid({ url: 'amqp://127.0.0.1', routingKey: 'k.{nope}' }, 'routingKey');
    invalid({ url: 'amqp://127.0.0.1', confirmTimeoutMs: 0 }, 'confirmTimeoutMs');
    invalid({ url: 'amqp://127.0.0.1', connectTimeoutMs: 1.5 }, 'connectTimeoutMs');
    invalid({ url: 'amqp://127.0.0.1', maxReconnectDelayMs: 10 }, 'maxReconnectDelayMs');
    invalid({ url: 'amqp://127.0.0.1', maxMessageBytes: 2 ** 30 }, 'maxMessageBytes');
    invalid({ url: 'amqp://127.0.0.1', socketOptions: 'tls' }, 'socketOptions');
    invalid({ url: 'amqp://127.0.0.1', socketOptions: { timeout: 5 } }, 'socketOptions.timeout');
  });

  test('a bad URL is never echoed (it may hold a password)', () => {
    assert.throws(
      () => rabbitmqSink({ url: 'ampq://user:hunter2-secret@host' }),
      (error: Error) => error instanceof InvalidOptionError && !error.message.includes('hunter2-secret'),
    );
  });

  test("maxMessageBytes defaults to RabbitMQ 4's max_message_size (16 MiB): a larger row would close the channel on every retry", () => {
    assert.equal(resolveRabbitmqOptions({ url: 'amqp://127.0.0.1:1' }).maxMessageBytes, 16 * 1024 * 1024);
    assert.equal(
      resolveRabbitmqOptions({ url: 'amqp://127.0.0.1:1', maxMessageBytes: 134_217_728 }).maxMessageBytes,
      134_217_728,
    );
  });

  test('amqplib missing: MissingPeerDependencyError on send (the loader pointed at a module that does not exist); check() is false', async () => {
    const resolved = resolveRabbitmqOptions({ url: 'amqp://127.0.0.1:1' });
    const sink = createRabbitmqSink(resolved, () => loadPeer<AmqplibModule>('amqplib-that-does-not-exist', 'rabbitmqSink()'));
    await assert.rejects(sink.send(relayMessage(), { signal: new AbortController().signal }), (error: Error) => {
      assert.ok(error instanceof MissingPeerDependencyError, error.message);
      assert.equal(error.dependency, 'amqplib-that-does-not-exist');
      assert.match(error.message, /rabbitmqSink\(\) needs the optional peer dependency/);
      return true;
    });
    assert.equal(await sink.check(), false);
    await sink.close();
  });
});
