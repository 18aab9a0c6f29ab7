/**
 * natsSink() against a real nats-server with JetStream (Debian's package, started by
 * test/support/nats-server.ts on a free port, its store in a temp dir): messages consumed back with
 * the nats client and compared, the server stopped and restarted under load, its refusals, and bad
 * options. architecture/relay.md, "NATS JetStream sink".
 */
import assert from 'node:assert/strict';
import { after, before, describe, test, type TestContext } from 'node:test';

import { connect, type JetStreamManager, nanos, type NatsConnection, StorageType } from 'nats';

import { InvalidOptionError, MissingPeerDependencyError, SinkRefusedError, SinkUnavailableError } from '../../src/errors.js';
import type { RelayMessage } from '../../src/relay/sink.js';
import { loadPeer } from '../../src/relay/sinks/load-peer.js';
import { resolveNatsOptions } from '../../src/relay/sinks/nats-options.js';
import { createNatsSink, type NatsSink, natsSink, type NatsSinkOptions } from '../../src/relay/sinks/nats-sink.js';
import { type NatsServer, startNatsServer } from '../support/nats-server.js';
import { relayMessage, relayMessages, sendInKeyOrder } from '../support/relay-messages.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait-for.js';

let server: NatsServer | undefined;
let skip: string | undefined;
let admin: NatsConnection | undefined;
let jsm: JetStreamManager | undefined;
const sinks: NatsSink[] = [];

before(async () => {
  const started = await startNatsServer();
  if ('skip' in started) {
    skip = started.skip;
    return;
  }
  server = started;
  admin = await connect({ servers: server.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  jsm = await admin.jetstreamManager();
});

after(async () => {
  await Promise.all(sinks.map((sink) => sink.close()));
  await admin?.close();
  await server?.close();
});

/** The running server, or a skip (never in CI: startNatsServer() throws there instead). */
function serverFor(t: TestContext): NatsServer | undefined {
  if (server === undefined) t.skip(skip);
  return server;
}

function sinkFor(options: Partial<NatsSinkOptions> = {}): NatsSink {
  const sink = natsSink({ servers: (server as NatsServer).url, ...options });
  sinks.push(sink);
  return sink;
}

async function addStream(name: string, subjects: string[], extra: { max_msg_size?: number } = {}): Promise<void> {
  await (jsm as JetStreamManager).streams.add({
    name,
    subjects,
    storage: StorageType.File,
    duplicate_window: nanos(120_000),
    ...extra,
  });
}

interface Consumed {
  readonly subject: string;
  readonly body: Buffer;
  readonly headers: Map<string, string>;
}

/** Every message the stream holds on `subject`, in stream order, read with an ordered consumer. */
async function consumeAll(stream: string, subject: string): Promise<Consumed[]> {
  const js = (admin as NatsConnection).jetstream();
  const info = await (jsm as JetStreamManager).streams.info(stream, { subjects_filter: subject });
  const total = info.state.subjects?.[subject] ?? 0;
  const out: Consumed[] = [];
  if (total === 0) return out;
  const consumer = await js.consumers.get(stream, { filterSubjects: subject });
  const messages = await consumer.consume();
  for await (const m of messages) {
    const headers = new Map<string, string>();
    for (const key of m.headers?.keys() ?? []) headers.set(key, m.headers?.get(key) ?? '');
    out.push({ subject: m.subject, body: Buffer.from(m.data), headers });
    if (out.length === total) break;
  }
  return out;
}

async function refusal(sink: NatsSink, message: RelayMessage): Promise<SinkRefusedError> {
  try {
    await sink.send(message, { signal: new AbortController().signal });
  } catch (error) {
    assert.ok(error instanceof SinkRefusedError, `expected SinkRefusedError, got ${String(error)}`);
    return error;
  }
  return assert.fail('expected the send to be refused');
}

describe('natsSink against a real nats-server', () => {
  test('10,000 messages at 64 in flight arrive with their bytes, headers and Nats-Msg-Id, in order per key', async (t) => {
    if (serverFor(t) === undefined) return;
    await addStream('BULK', ['bulk.>']);
    const sink = sinkFor({ subject: 'bulk.{queue}' });
    const messages = relayMessages(10_000, { keys: 200 });
    await sendInKeyOrder(sink, messages, { concurrency: 64 });
    assert.deepEqual(sink.stats, { confirmed: 10_000, duplicates: 0 });

    const consumed = await consumeAll('BULK', 'bulk.orders');
    assert.equal(consumed.length, 10_000);
    const sent = new Map(messages.map((m) => [m.messageId, m]));
    const lastIndexOfKey = new Map<string, number>();
    for (const got of consumed) {
      const id = got.headers.get('Nats-Msg-Id') ?? '';
      const message = sent.get(id);
      assert.ok(message !== undefined, `unknown Nats-Msg-Id ${id}`);
      sent.delete(id);
      assert.ok(got.body.equals(message.payload), `body of ${id}`);
      for (const [name, value] of Object.entries(message.headers)) assert.equal(got.headers.get(name), value, `${name} of ${id}`);
      assert.equal(got.headers.get('correlation-id'), message.correlationId);
      // Order per key: ids grow with the index within a key (relayMessages gives key i % keys to message i).
      const key = message.orderingKey as string;
      assert.ok(Number(message.id) > (lastIndexOfKey.get(key) ?? 0), `key ${key}: ${id} after a later message`);
      lastIndexOfKey.set(key, Number(message.id));
    }
    assert.equal(sent.size, 0, 'every message was consumed once');
  });

  test('a resend of a stored message is acked as a duplicate and the stream keeps one copy (Nats-Msg-Id)', async (t) => {
    if (serverFor(t) === undefined) return;
    await addStream('DEDUP', ['dedup.>']);
    const sink = sinkFor({ subject: 'dedup.{queue}' });
    const message = relayMessage({ queue: 'q' });
    const signal = new AbortController().signal;
    await sink.send(message, { signal });
    await sink.send({ ...message, deliveriesCount: 2 }, { signal });
    assert.deepEqual(sink.stats, { confirmed: 2, duplicates: 1 });
    const consumed = await consumeAll('DEDUP', 'dedup.q');
    assert.equal(consumed.length, 1);
  });

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    test(`the server ${signal === 'SIGTERM' ? 'stopped' : 'killed'} mid-stream: sends fail as retryable within their bound, then succeed on the same sink; nothing lost, nothing stored twice`, async (t) => {
      const nats = serverFor(t);
      if (nats === undefined) return;
      const stream = `RESTART_${signal}`;
      await addStream(stream, [`${stream}.>`]);
      const confirmTimeoutMs = 2_000;
      const sink = sinkFor({ subject: `${stream}.{queue}`, confirmTimeoutMs, reconnectWaitMs: 100 });
      const messages = relayMessages(3_000, { keys: 64, maxBytes: 512 });
      const concurrency = 32;
      let confirmed = 0;
      let failed = 0;
      let confirmedAfterRestart = 0;
      const outcome = sendInKeyOrder(sink, messages, {
        concurrency,
        retry: (error) => error instanceof SinkUnavailableError,
        onConfirmed: () => (confirmed += 1),
        onRetry: () => (failed += 1),
      });
      await waitFor(() => confirmed >= 500, { timeoutMs: 30_000, what: '500 confirmed before the stop' });
      await nats.stop(signal);
      const confirmedAtStop = confirmed;
      assert.equal(await sink.check(), false, 'check() reports the stopped server');
      // The outage lasts until every lane has failed several times: past the in-flight sends' confirm
      // timeouts, into the sends the sink rejects at once while the client reconnects.
      await waitFor(() => failed >= 4 * concurrency, { timeoutMs: 60_000, what: 'failed sends while the server is down' });
      await nats.restart();
      const restarted = performance.now();
      confirmedAfterRestart = confirmed;
      await waitFor(() => confirmed > confirmedAfterRestart, { timeoutMs: 30_000, what: 'a send confirmed after the restart' });
      const recoveryMs = performance.now() - restarted;
      const report = await outcome;

      assert.ok(confirmedAtStop < messages.length, 'the stop happened mid-stream');
      for (const failure of report.failures) {
        assert.ok(
          failure instanceof SinkUnavailableError,
          `a retryable SinkUnavailableError, got ${failure.name}: ${failure.message}`,
        );
      }
      assert.ok(
        report.failures.some((f) => /the client is reconnecting/.test(f.message)),
        'sends while the client reconnects fail at once instead of queueing in its buffer',
      );
      // A bound, not a speed: a send that hangs would never settle; these waited their confirm timeout at most.
      assert.ok(report.longestSendMs < confirmTimeoutMs + 10_000, `longest send ${Math.round(report.longestSendMs)} ms`);
      assert.equal(await sink.check(), true, 'check() reports the restarted server');

      const consumed = await consumeAll(stream, `${stream}.orders`);
      const ids = consumed.map((c) => c.headers.get('Nats-Msg-Id'));
      assert.equal(new Set(ids).size, messages.length, 'every message stored');
      assert.equal(ids.length, messages.length, 'none stored twice');
      t.diagnostic(
        `${signal}: ${report.failures.length} failed attempts retried, ${sink.stats.duplicates} resends acked as duplicates (deduplicated by Nats-Msg-Id), 0 stored twice, longest send ${Math.round(report.longestSendMs)} ms, first confirm ${Math.round(recoveryMs)} ms after the restart`,
      );
    });
  }

  test('the server killed with sends and a check() waiting for their replies: they fail as retryable when the connection drops, not after the confirm timeout', async (t) => {
    if (serverFor(t) === undefined) return;
    // Its own server, behind a proxy: frozen, the proxy holds the sends written but unanswered, so
    // they are certainly in flight when the server dies; thawed, it passes the server's death on.
    const own = await startNatsServer();
    if ('skip' in own) return;
    t.after(() => own.close());
    const ownAdmin = await connect({ servers: own.url });
    await (await ownAdmin.jetstreamManager()).streams.add({ name: 'CRASH', subjects: ['crash.>'], storage: StorageType.File });
    await ownAdmin.close();
    const proxy = await TcpProxy.start(own.port);
    t.after(() => proxy.close());
    // A confirm timeout far past the test's own bound below: waiting for it would fail the test.
    const confirmTimeoutMs = 60_000;
    const sink = natsSink({
      servers: `nats://127.0.0.1:${proxy.port}`,
      subject: 'crash.{queue}',
      confirmTimeoutMs,
      reconnectWaitMs: 100,
    });
    t.after(() => sink.close());
    const signal = new AbortController().signal;
    await sink.send(relayMessage(), { signal });

    proxy.freeze();
    const events: string[] = [];
    const sends = relayMessages(16).map((m) =>
      sink.send(m, { signal }).then(
        () => events.push('confirmed'),
        (error: unknown) => events.push(error instanceof SinkUnavailableError ? 'unavailable' : `other: ${String(error)}`),
      ),
    );
    const checked = sink.check().then((up) => events.push(`check ${up}`));
    await own.stop('SIGKILL');
    proxy.thaw();
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        events.push('half the confirm timeout');
        resolve();
      }, confirmTimeoutMs / 2);
    });
    await Promise.race([Promise.all([...sends, checked]), bound]);
    clearTimeout(timer);
    assert.deepEqual(events.toSorted(), ['check false', ...Array<string>(16).fill('unavailable')]);
    assert.equal(sink.stats.confirmed, 1);
  });

  test('refusals: no stream for the subject, over max_payload, over the stream max_msg_size, another stream than `stream`, a header NATS cannot carry, an unpublishable subject', async (t) => {
    if (serverFor(t) === undefined) return;
    await addStream('SMALL', ['small.>'], { max_msg_size: 1024 });
    await addStream('ROUTED', ['routed.>']);

    const noStream = await refusal(sinkFor({ subject: 'nostream.{queue}' }), relayMessage());
    assert.match(noStream.reason, /no JetStream stream captures subject "nostream\.orders" \(503 no responders\)/);

    const big = await refusal(sinkFor({ subject: 'routed.big' }), relayMessage({ payload: Buffer.alloc(1024 * 1024 + 1) }));
    assert.match(big.reason, /exceeds the server's max_payload of 1048576 bytes/);

    const small = await refusal(sinkFor({ subject: 'small.x' }), relayMessage({ payload: Buffer.alloc(2048) }));
    assert.match(small.reason, /err_code 10054/);

    const wrongStream = await refusal(sinkFor({ subject: 'routed.x', stream: 'SMALL' }), relayMessage());
    assert.match(wrongStream.reason, /err_code 10060/);

    const sink = sinkFor({ subject: 'routed.{headers.kind}' });
    const crlf = await refusal(sink, relayMessage({ headers: { kind: 'a', 'x-bad': 'one\r\ntwo' } }));
    assert.match(crlf.reason, /header "x-bad"/);
    const space = await refusal(sink, relayMessage({ headers: { kind: 'a b' } }));
    assert.match(space.reason, /not a publishable NATS subject/);
    const wildcard = await refusal(sink, relayMessage({ headers: { kind: '>' } }));
    assert.match(wildcard.reason, /not a publishable NATS subject/);
    const missing = await refusal(sink, relayMessage({ headers: {} }));
    assert.match(missing.reason, /names header "kind"/);

    // The same sink still sends what it can.
    await sink.send(relayMessage({ headers: { kind: 'ok' } }), { signal: new AbortController().signal });
    assert.equal(sink.stats.confirmed, 1);
  });

  test('a server without JetStream: the 503 is retryable (JetStream itself does not answer) and check() says down', async (t) => {
    if (serverFor(t) === undefined) return;
    const plain = await startNatsServer({ jetstream: false });
    if ('skip' in plain) return;
    t.after(() => plain.close());
    const sink = natsSink({ servers: plain.url, subject: 'any.{queue}' });
    t.after(() => sink.close());
    await assert.rejects(sink.send(relayMessage(), { signal: new AbortController().signal }), (error: unknown) => {
      assert.ok(error instanceof SinkUnavailableError, String(error));
      assert.match(error.reason, /the JetStream API did not say which streams capture it/);
      return true;
    });
    assert.equal(await sink.check(), false);
  });

  test('an unreachable server: retryable, redacted, one dial per backoff; an aborted send rejects with its reason', async (t) => {
    const nats = serverFor(t);
    if (nats === undefined) return;
    const down = natsSink({
      servers: 'nats://127.0.0.1:1',
      connectOptions: { user: 'relay', pass: 's3cret' },
      reconnectWaitMs: 60_000,
      connectTimeoutMs: 2_000,
    });
    t.after(() => down.close());
    const signal = new AbortController().signal;
    const first = await down.send(relayMessage(), { signal }).then(
      () => assert.fail('sent to port 1'),
      (error: unknown) => error,
    );
    assert.ok(first instanceof SinkUnavailableError, String(first));
    assert.doesNotMatch(first.message, /s3cret/);
    assert.match(first.message, /nats:\/\/127\.0\.0\.1:1/);
    // The next send does not dial again: the backoff (60 s here) has not passed.
    await assert.rejects(down.send(relayMessage(), { signal }), /next attempt in \d+ ms/);
    assert.equal(await down.check(), false);

    const controller = new AbortController();
    controller.abort(new Error('relay stopping'));
    await assert.rejects(sinkFor().send(relayMessage(), { signal: controller.signal }), /relay stopping/);
  });
});

describe('natsSink options and its client', () => {
  test('bad options throw InvalidOptionError naming the option; credentials are not shown', () => {
    const cases: [unknown, string][] = [
      [{}, 'servers'],
      [{ servers: [] }, 'servers'],
      [{ servers: [''] }, 'servers'],
      [{ servers: 'nats://x', subjet: 'a' }, 'subjet'],
      [{ servers: 'nats://x', subject: '' }, 'subject'],
      [{ servers: 'nats://x', subject: 'a.{nope}' }, 'subject'],
      // A subject that no row can be published to (review: each row was refused into the DLQ).
      [{ servers: 'nats://x', subject: 'orders.>' }, 'subject'],
      [{ servers: 'nats://x', subject: 'orders.*' }, 'subject'],
      [{ servers: 'nats://x', subject: 'orders created' }, 'subject'],
      [{ servers: 'nats://x', subject: 'orders.' }, 'subject'],
      [{ servers: 'nats://x', subject: 'orders..{queue}' }, 'subject'],
      [{ servers: 'nats://x', subject: 'orders.*.{queue}' }, 'subject'],
      [{ servers: 'nats://x', stream: 'a.b' }, 'stream'],
      [{ servers: 'nats://x', confirmTimeoutMs: 0 }, 'confirmTimeoutMs'],
      [{ servers: 'nats://x', connectTimeoutMs: 1.5 }, 'connectTimeoutMs'],
      [{ servers: 'nats://x', reconnectWaitMs: -1 }, 'reconnectWaitMs'],
      [{ servers: 'nats://x', connectOptions: 'user=x' }, 'connectOptions'],
      [{ servers: 'nats://x', connectOptions: { maxReconnectAttempts: 3 } }, 'connectOptions.maxReconnectAttempts'],
    ];
    for (const [options, option] of cases) {
      assert.throws(
        () => natsSink(options as NatsSinkOptions),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
        `${JSON.stringify(options)} names ${option}`,
      );
    }
    // What a row fills in is judged per row; the template's own text passes when it is publishable.
    for (const subject of ['orders.{queue}', '{queue}', 'a*.{headers.kind}', 'orders.{queue}.*x', '$KV.b.{id}']) {
      assert.doesNotThrow(() => natsSink({ servers: 'nats://x', subject }), subject);
    }
    assert.throws(
      () => natsSink({ servers: 'nats://x', connectOptions: { servers: 'nats://u:s3cret@h', pass: 's3cret' } }),
      (error: unknown) => error instanceof InvalidOptionError && !error.message.includes('s3cret'),
    );
  });

  test('a missing client is MissingPeerDependencyError, thrown by the send that needs it (lazy loader, pointed at a module that does not exist)', async () => {
    await assert.rejects(loadPeer('txoutbox-no-such-client', 'natsSink()'), (error: unknown) => {
      assert.ok(error instanceof MissingPeerDependencyError);
      assert.equal(error.dependency, 'txoutbox-no-such-client');
      assert.match(error.message, /npm install txoutbox-no-such-client/);
      return true;
    });
    const sink = createNatsSink(resolveNatsOptions({ servers: 'nats://127.0.0.1:1' }), () =>
      loadPeer('txoutbox-no-such-client', 'natsSink()'),
    );
    for (let i = 0; i < 2; i++) {
      await assert.rejects(sink.send(relayMessage(), { signal: new AbortController().signal }), MissingPeerDependencyError);
    }
    assert.equal(await sink.check(), false);
    await sink.close();
  });
});
