/**
 * natsSink() against a real nats-server (test/support/nats-server.ts): what it must not take for a
 * stored message, and what it must not send. A reply that is not a JetStream PubAck (a plain service
 * on the subject) never confirms a row; a `$JS.API.STREAM.NAMES` reply carrying an error never
 * refuses one; row headers named `Nats-*` never reach JetStream as control headers; credentials in
 * a server URL (which nats.js ignores) are rejected at creation. architecture/relay.md, "NATS
 * JetStream sink".
 */
import assert from 'node:assert/strict';
import { after, before, describe, test, type TestContext } from 'node:test';

import { connect, type JetStreamManager, nanos, type NatsConnection, StorageType } from 'nats';

import { InvalidOptionError, SinkRefusedError, SinkUnavailableError } from '../../src/errors.js';
import { accountInfoProblem, ackProblem, refusedApiError, streamNamesVerdict } from '../../src/relay/sinks/nats-replies.js';
import { type NatsSink, natsSink, type NatsSinkOptions } from '../../src/relay/sinks/nats-sink.js';
import { type NatsServer, startNatsServer } from '../support/nats-server.js';
import { relayMessage } from '../support/relay-messages.js';

let server: NatsServer | undefined;
let skip: string | undefined;
let admin: NatsConnection | undefined;
let jsm: JetStreamManager | undefined;
const sinks: NatsSink[] = [];
const signal = new AbortController().signal;

before(async () => {
  const started = await startNatsServer();
  if ('skip' in started) {
    skip = started.skip;
    return;
  }
  server = started;
  admin = await connect({ servers: server.url });
  jsm = await admin.jetstreamManager();
});

after(async () => {
  await Promise.all(sinks.map((sink) => sink.close()));
  await admin?.close();
  await server?.close();
});

function serverFor(t: TestContext): NatsServer | undefined {
  if (server === undefined) t.skip(skip);
  return server;
}

function sinkFor(options: Partial<NatsSinkOptions> & { servers?: string } = {}): NatsSink {
  const sink = natsSink({ servers: (server as NatsServer).url, ...options });
  sinks.push(sink);
  return sink;
}

/** A plain request/reply service (no JetStream) answering every request on `subject` with `reply`. */
function service(subject: string, reply: string): void {
  (admin as NatsConnection).subscribe(subject, { callback: (_error, msg) => msg.respond(new TextEncoder().encode(reply)) });
}

describe('natsSink takes only a JetStream PubAck for a stored message', () => {
  test('a plain service replying on the subject, no stream capturing it: refused, not confirmed', async (t) => {
    if (serverFor(t) === undefined) return;
    service('svc.>', '{"ok":true}');
    await (admin as NatsConnection).flush();
    const sink = sinkFor({ subject: 'svc.{queue}' });
    await assert.rejects(sink.send(relayMessage(), { signal }), (error: unknown) => {
      assert.ok(error instanceof SinkRefusedError, String(error));
      assert.match(error.reason, /not a JetStream ack/);
      assert.match(error.reason, /no JetStream stream captures subject "svc\.orders"/);
      return true;
    });
    assert.equal(sink.stats.confirmed, 0);
  });

  test('a reply naming another stream than the stream option: refused when no stream captures the subject', async (t) => {
    if (serverFor(t) === undefined) return;
    service('fake.>', '{"stream":"OTHER","seq":1}');
    await (admin as NatsConnection).flush();
    const sink = sinkFor({ subject: 'fake.{queue}', stream: 'ORDERS' });
    await assert.rejects(sink.send(relayMessage(), { signal }), SinkRefusedError);
    assert.equal(sink.stats.confirmed, 0);
  });

  test('ackProblem(): a PubAck needs a non-empty stream, the one named by the stream option when set', () => {
    assert.equal(ackProblem({ stream: 'ORDERS', seq: 1 }, undefined), undefined);
    assert.equal(ackProblem({ stream: 'ORDERS', seq: 1, duplicate: true }, 'ORDERS'), undefined);
    assert.match(ackProblem({ ok: true }, undefined) ?? '', /no stream/);
    assert.match(ackProblem({ stream: '' }, undefined) ?? '', /no stream/);
    assert.match(ackProblem({ stream: 7 }, undefined) ?? '', /no stream/);
    assert.match(ackProblem(null, undefined) ?? '', /no stream/);
    assert.match(ackProblem({ stream: 'OTHER', seq: 1 }, 'ORDERS') ?? '', /stream "OTHER", not "ORDERS"/);
  });
});

describe('natsSink refuses on "no stream" only when JetStream says so without an error', () => {
  test('an account without JetStream on a JetStream server: STREAM.NAMES answers an error (10039), so the 503 is retried, not dead-lettered', async (t) => {
    if (serverFor(t) === undefined) return;
    const accounts = await startNatsServer({
      config: `accounts {
        JS: { jetstream: enabled, users: [{ user: js, password: js-secret }] }
        PLAIN: { users: [{ user: plain, password: plain-secret }] }
      }`,
    });
    if ('skip' in accounts) return;
    t.after(() => accounts.close());
    const plain = natsSink({
      servers: accounts.url,
      subject: 'any.{queue}',
      connectOptions: { user: 'plain', pass: 'plain-secret' },
    });
    sinks.push(plain);
    await assert.rejects(plain.send(relayMessage(), { signal }), (error: unknown) => {
      assert.ok(error instanceof SinkUnavailableError, `retryable, got ${String(error)}`);
      assert.match(error.reason, /err_code 10039/);
      return true;
    });
    // Reproduction (review finding): $JS.API.INFO answers the 10039 error in time, and check() said up.
    assert.equal(await plain.check(), false, 'check(): down while JetStream refuses the account');

    // The way to authenticate that works: connectOptions, not the URL (see the servers test below).
    const jsAccount = await connect({ servers: accounts.url, user: 'js', pass: 'js-secret' });
    t.after(() => jsAccount.close());
    await (await jsAccount.jetstreamManager()).streams.add({ name: 'AUTH', subjects: ['auth.>'] });
    const authed = natsSink({
      servers: accounts.url,
      subject: 'auth.{queue}',
      connectOptions: { user: 'js', pass: 'js-secret' },
    });
    sinks.push(authed);
    await authed.send(relayMessage(), { signal });
    assert.equal(authed.stats.confirmed, 1);
    assert.equal(await authed.check(), true);
  });

  // A JetStream cluster without a meta leader cannot be built on one server: the verdict is checked
  // on the exact reply such a cluster gives (nats-server's JSClusterNotAvailErr), a recorded shape.
  test('accountInfoProblem(): an error reply (leaderless cluster 10008, no JetStream 10039) or an unreadable one is a problem', () => {
    assert.equal(
      accountInfoProblem({ type: 'io.nats.jetstream.api.v1.account_info_response', memory: 0, streams: 0 }),
      undefined,
    );
    const leaderless = { error: { code: 503, err_code: 10008, description: 'JetStream system temporarily unavailable' } };
    assert.match(accountInfoProblem(leaderless) ?? '', /temporarily unavailable \(err_code 10008\)/);
    assert.match(accountInfoProblem(null) ?? '', /unreadable/);
  });

  test('streamNamesVerdict(): the leaderless-cluster reply (503, err_code 10008, streams null) is unavailable, not "none"', () => {
    const leaderless = {
      type: 'io.nats.jetstream.api.v1.stream_names_response',
      error: { code: 503, err_code: 10008, description: 'JetStream system temporarily unavailable' },
      total: 0,
      offset: 0,
      limit: 0,
      streams: null,
    };
    const verdict = streamNamesVerdict(leaderless);
    assert.equal(verdict.kind, 'unavailable');
    assert.match(verdict.kind === 'unavailable' ? verdict.why : '', /temporarily unavailable \(err_code 10008\)/);
    const none = { type: 'io.nats.jetstream.api.v1.stream_names_response', total: 0, offset: 0, limit: 1024, streams: null };
    assert.deepEqual(streamNamesVerdict(none), { kind: 'none' });
    assert.deepEqual(streamNamesVerdict({ ...none, streams: [] }), { kind: 'none' });
    assert.deepEqual(streamNamesVerdict({ ...none, total: 1, streams: ['ORDERS'] }), { kind: 'streams', streams: ['ORDERS'] });
    assert.equal(streamNamesVerdict({ streams: null }).kind, 'unavailable', 'no total: not a "none" JetStream said');
    assert.equal(streamNamesVerdict('oops').kind, 'unavailable');
  });
});

describe('natsSink keeps row headers from acting as JetStream control headers', () => {
  test('Nats-* row headers are not sent: an expected-sequence and a rollup neither fail the row nor purge the subject', async (t) => {
    if (serverFor(t) === undefined) return;
    await (jsm as JetStreamManager).streams.add({
      name: 'HDR',
      subjects: ['hdr.>'],
      storage: StorageType.File,
      duplicate_window: nanos(120_000),
      allow_rollup_hdrs: true,
    });
    const sink = sinkFor({ subject: 'hdr.{queue}' });
    await sink.send(relayMessage(), { signal });
    const controlHeaders = {
      'Nats-Expected-Last-Sequence': '999',
      'nats-rollup': 'all',
      'NATS-Expected-Stream': 'NOPE',
      'Nats-Msg-Id': 'not-the-row-id',
      'x-kept': 'yes',
    };
    const second = relayMessage({ id: '2', headers: controlHeaders });
    await sink.send(second, { signal });
    // A rollup alone (nothing else to fail it first): the stream allows it, so it would purge.
    await sink.send(relayMessage({ id: '3', headers: { 'Nats-Rollup': 'sub' } }), { signal });
    assert.equal(sink.stats.confirmed, 3);

    const info = await (jsm as JetStreamManager).streams.info('HDR');
    assert.equal(info.state.messages, 3, 'no rollup purged the earlier messages');
    const stored = await (jsm as JetStreamManager).streams.getMessage('HDR', { seq: 2 });
    assert.equal(stored.header.get('x-kept'), 'yes');
    assert.equal(stored.header.get('Nats-Msg-Id'), second.messageId);
    for (const name of ['Nats-Expected-Last-Sequence', 'Nats-Rollup', 'Nats-Expected-Stream']) {
      assert.equal(stored.header.get(name), '', `${name} not stored`);
    }
  });

  test('refusedApiError(): wrong-last-msg-id, wrong-last-sequence and rollup errors are permanent', () => {
    for (const code of [10054, 10060, 10070, 10071, 10111]) assert.ok(refusedApiError(code) !== undefined, String(code));
    for (const code of [10047, 10077, 10008]) assert.equal(refusedApiError(code), undefined, `${code} is retried`);
  });
});

describe('natsSink keeps row values from naming NATS system subjects', () => {
  test('a template that starts with a placeholder: a row naming $JS.API.STREAM.PURGE.<stream> is refused, the stream is not purged', async (t) => {
    if (serverFor(t) === undefined) return;
    await (jsm as JetStreamManager).streams.add({ name: 'SYS', subjects: ['sys.>'], storage: StorageType.File });
    const sink = sinkFor({ subject: '{headers.type}' });
    await sink.send(relayMessage({ headers: { type: 'sys.kept' } }), { signal });
    await assert.rejects(
      sink.send(relayMessage({ id: '2', headers: { type: '$JS.API.STREAM.PURGE.SYS' } }), { signal }),
      (error: unknown) => error instanceof SinkRefusedError && /is a NATS system subject/.test(error.reason),
    );
    const info = await (jsm as JetStreamManager).streams.info('SYS');
    assert.equal(info.state.messages, 1, 'the stream was not purged');
  });

  test('a subject option that starts with "$" itself (a KV bucket) may name one', async (t) => {
    if (serverFor(t) === undefined) return;
    const kv = await (admin as NatsConnection).jetstream().views.kv('relaykv');
    const sink = sinkFor({ subject: '$KV.relaykv.{headers.key}' });
    const message = relayMessage({ headers: { key: 'colour' } });
    await sink.send(message, { signal });
    assert.ok(Buffer.from((await kv.get('colour'))?.value ?? []).equals(message.payload));
  });
});

describe('natsSink rejects credentials in a server URL', () => {
  test('user info in any server URL is InvalidOptionError on servers, the value redacted, the fix named', () => {
    for (const servers of [
      'nats://relay:s3cret@127.0.0.1:4222',
      'relay:12345@127.0.0.1:4222',
      'tls://s3cret@nats.example',
      ['nats://127.0.0.1:4222', 'nats://relay:s3cret@127.0.0.2:4222'],
    ]) {
      assert.throws(
        () => natsSink({ servers }),
        (error: unknown) => {
          assert.ok(error instanceof InvalidOptionError, String(error));
          assert.equal(error.option, 'servers');
          assert.doesNotMatch(error.message, /s3cret|12345/);
          assert.match(error.message, /connectOptions/);
          return true;
        },
        JSON.stringify(servers),
      );
    }
    for (const servers of ['nats://127.0.0.1:4222', '127.0.0.1:4222', 'nats.example', 'ws://host:80/path@x']) {
      natsSink({ servers })
        .close()
        .catch(() => undefined);
    }
  });
});
