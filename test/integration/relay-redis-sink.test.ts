/**
 * redisStreamSink() against a real redis-server (Debian's package, started by
 * test/support/redis-server.ts on a free port, append-only file in a temp dir): entries read back
 * with ioredis and compared, MAXLEN, the server stopped and restarted under load (duplicates
 * counted: Redis cannot deduplicate), its refusals, and bad options. architecture/relay.md,
 * "Redis Streams sink".
 */
import assert from 'node:assert/strict';
import { connect, createServer, type Socket } from 'node:net';
import { after, before, describe, test, type TestContext } from 'node:test';

import { Redis } from 'ioredis';

import { freePort } from '../../src/embedded/free-port.js';
import { InvalidOptionError, MissingPeerDependencyError, SinkRefusedError, SinkUnavailableError } from '../../src/errors.js';
import type { RelayMessage } from '../../src/relay/sink.js';
import { loadPeer } from '../../src/relay/sinks/load-peer.js';
import { resolveRedisStreamOptions } from '../../src/relay/sinks/redis-stream-options.js';
import {
  createRedisStreamSink,
  type RedisStreamSink,
  redisStreamSink,
  type RedisStreamSinkOptions,
} from '../../src/relay/sinks/redis-stream-sink.js';
import { type RedisServer, startRedisServer } from '../support/redis-server.js';
import { relayMessage, relayMessages, sendInKeyOrder } from '../support/relay-messages.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait-for.js';

let server: RedisServer | undefined;
let skip: string | undefined;
let admin: Redis | undefined;
const sinks: RedisStreamSink[] = [];

before(async () => {
  const started = await startRedisServer();
  if ('skip' in started) {
    skip = started.skip;
    return;
  }
  server = started;
  admin = new Redis(server.url, { retryStrategy: () => 100, maxRetriesPerRequest: null });
  admin.on('error', () => undefined);
});

after(async () => {
  await Promise.all(sinks.map((sink) => sink.close()));
  admin?.disconnect();
  await server?.close();
});

/** The running server, or a skip (never in CI: startRedisServer() throws there instead). */
function serverFor(t: TestContext): RedisServer | undefined {
  if (server === undefined) t.skip(skip);
  return server;
}

function sinkFor(options: Partial<RedisStreamSinkOptions> = {}): RedisStreamSink {
  const sink = redisStreamSink({ url: (server as RedisServer).url, ...options });
  sinks.push(sink);
  return sink;
}

interface Entry {
  readonly fields: string[];
  readonly id: string;
  readonly payload: Buffer;
  readonly headers: Record<string, string>;
}

/** Every entry of `stream`, in stream order, read with XRANGE in pages (binary-safe). */
async function readStream(stream: string): Promise<Entry[]> {
  const out: Entry[] = [];
  let start = '-';
  for (;;) {
    const page = (await (admin as Redis).callBuffer('XRANGE', stream, start, '+', 'COUNT', '1000')) as [Buffer, Buffer[]][];
    for (const [, values] of page) {
      const fields = values.filter((_, i) => i % 2 === 0).map((b) => b.toString());
      const value = (name: string): Buffer =>
        values[values.findIndex((v, i) => i % 2 === 0 && v.toString() === name) + 1] as Buffer;
      out.push({
        fields,
        id: value('id').toString(),
        payload: value('payload'),
        headers: JSON.parse(value('headers').toString()) as Record<string, string>,
      });
    }
    if (page.length < 1000) return out;
    start = `(${(page.at(-1) as [Buffer, Buffer[]])[0].toString()}`;
  }
}

async function refusal(sink: RedisStreamSink, message: RelayMessage): Promise<SinkRefusedError> {
  try {
    await sink.send(message, { signal: new AbortController().signal });
  } catch (error) {
    assert.ok(error instanceof SinkRefusedError, `expected SinkRefusedError, got ${String(error)}`);
    return error;
  }
  return assert.fail('expected the send to be refused');
}

describe('redisStreamSink against a real redis-server', () => {
  test('10,000 messages at 64 in flight are entries {id, payload, headers} with their bytes and headers, in order per key', async (t) => {
    if (serverFor(t) === undefined) return;
    const sink = sinkFor({ stream: 'bulk:{queue}' });
    const messages = relayMessages(10_000, { keys: 200 });
    await sendInKeyOrder(sink, messages, { concurrency: 64 });
    assert.deepEqual(sink.stats, { confirmed: 10_000 });

    const entries = await readStream('bulk:orders');
    assert.equal(entries.length, 10_000);
    const sent = new Map(messages.map((m) => [m.messageId, m]));
    const lastIndexOfKey = new Map<string, number>();
    for (const entry of entries) {
      assert.deepEqual(entry.fields, ['id', 'payload', 'headers']);
      const message = sent.get(entry.id);
      assert.ok(message !== undefined, `unknown id ${entry.id}`);
      sent.delete(entry.id);
      assert.ok(entry.payload.equals(message.payload), `payload of ${entry.id}`);
      assert.deepEqual(entry.headers, message.headers);
      const key = message.orderingKey as string;
      assert.ok(Number(message.id) > (lastIndexOfKey.get(key) ?? 0), `key ${key}: ${entry.id} after a later message`);
      lastIndexOfKey.set(key, Number(message.id));
    }
    assert.equal(sent.size, 0, 'every message appended once');
  });

  test('headers without correlation-id get the message correlation id; maxLen trims exactly or approximately', async (t) => {
    if (serverFor(t) === undefined) return;
    const signal = new AbortController().signal;
    const plain = sinkFor({ stream: 'plain' });
    await plain.send(relayMessage({ headers: { 'content-type': 'text/plain' }, correlationId: 'c-77' }), { signal });
    const [entry] = await readStream('plain');
    assert.deepEqual(entry?.headers, { 'content-type': 'text/plain', 'correlation-id': 'c-77' });

    const exact = sinkFor({ stream: 'trim-exact', maxLen: 10, approximate: false });
    const approximate = sinkFor({ stream: 'trim-approximate', maxLen: 10 });
    const messages = relayMessages(300, { keys: 1, maxBytes: 16 });
    await sendInKeyOrder(exact, messages, { concurrency: 1 });
    await sendInKeyOrder(approximate, messages, { concurrency: 1 });
    const kept = await readStream('trim-exact');
    assert.deepEqual(
      kept.map((e) => e.id),
      messages.slice(-10).map((m) => m.messageId),
    );
    // MAXLEN ~ trims whole macro nodes (100 entries by default): at least 10 stay, far fewer than 300.
    const length = await (admin as Redis).xlen('trim-approximate');
    assert.ok(length >= 10 && length < 300, `XLEN ${length}`);
  });

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    test(`the server ${signal === 'SIGTERM' ? 'stopped' : 'killed'} mid-stream: sends fail as retryable within their bound, then succeed on the same sink; nothing lost, duplicates counted`, async (t) => {
      const redis = serverFor(t);
      if (redis === undefined) return;
      const stream = `restart-${signal}`;
      const confirmTimeoutMs = 2_000;
      const sink = sinkFor({ stream, confirmTimeoutMs, reconnectWaitMs: 50 });
      const messages = relayMessages(3_000, { keys: 64, maxBytes: 512 });
      const concurrency = 32;
      let confirmed = 0;
      let failed = 0;
      const retried = new Set<string>();
      const outcome = sendInKeyOrder(sink, messages, {
        concurrency,
        retry: (error) => error instanceof SinkUnavailableError,
        onConfirmed: () => (confirmed += 1),
        onRetry: (_, message) => {
          failed += 1;
          retried.add(message.messageId);
        },
      });
      await waitFor(() => confirmed >= 500, { timeoutMs: 30_000, what: '500 confirmed before the stop' });
      await redis.stop(signal);
      const confirmedAtStop = confirmed;
      assert.equal(await sink.check(), false, 'check() reports the stopped server');
      await waitFor(() => failed >= 4 * concurrency, { timeoutMs: 60_000, what: 'failed sends while the server is down' });
      await redis.restart();
      const restarted = performance.now();
      const confirmedAtRestart = confirmed;
      await waitFor(() => confirmed > confirmedAtRestart, { timeoutMs: 30_000, what: 'a send confirmed after the restart' });
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
        report.failures.some((f) => /the client reconnects by itself/.test(f.message)),
        'sends while the client reconnects fail at once instead of queueing',
      );
      // A bound, not a speed: a send that hangs would never settle.
      assert.ok(report.longestSendMs < confirmTimeoutMs + 10_000, `longest send ${Math.round(report.longestSendMs)} ms`);
      assert.equal(await sink.check(), true, 'check() reports the restarted server');

      const entries = await readStream(stream);
      const ids = entries.map((e) => e.id);
      const unique = new Set(ids);
      assert.equal(unique.size, messages.length, 'every message appended (0 lost)');
      const duplicates = ids.length - unique.size;
      const seen = new Set<string>();
      for (const id of ids) {
        if (seen.has(id)) assert.ok(retried.has(id), `${id} appended twice without a retry`);
        seen.add(id);
      }
      t.diagnostic(
        `${signal}: ${report.failures.length} failed attempts retried, ${duplicates} duplicate entries (consumers dedupe by the id field), 0 lost, longest send ${Math.round(report.longestSendMs)} ms, first confirm ${Math.round(recoveryMs)} ms after the restart`,
      );
    });
  }

  test('refusals: a key that is not a stream (WRONGTYPE), a key the ACL user may not write (NOPERM), a row the stream template cannot fill', async (t) => {
    const redis = serverFor(t);
    if (redis === undefined) return;
    const client = admin as Redis;
    await client.set('not-a-stream', 'x');
    const wrongType = await refusal(sinkFor({ stream: 'not-a-stream' }), relayMessage());
    assert.match(wrongType.reason, /^WRONGTYPE .* \(XADD to stream "not-a-stream"\)$/);

    await client.call('ACL', 'SETUSER', 'relay', 'on', '>relay-pw', '~allowed:*', '+@all');
    const limited = sinkFor({ url: `redis://relay:relay-pw@127.0.0.1:${redis.port}`, stream: '{headers.target}' });
    const noPerm = await refusal(limited, relayMessage({ headers: { target: 'forbidden:x' } }));
    assert.match(noPerm.reason, /^NOPERM /);
    assert.doesNotMatch(noPerm.message, /relay-pw/);
    await limited.send(relayMessage({ headers: { target: 'allowed:x' } }), { signal: new AbortController().signal });
    assert.equal(await client.xlen('allowed:x'), 1);

    const missing = await refusal(limited, relayMessage({ headers: {} }));
    assert.match(missing.reason, /names header "target"/);

    // check() asks ROLE (is it the primary?); a user the ACL refuses ROLE is checked by PING.
    assert.equal(await limited.check(), true);
    await client.call('ACL', 'SETUSER', 'relay', '-role');
    const noRole = sinkFor({ url: `redis://relay:relay-pw@127.0.0.1:${redis.port}`, stream: 'allowed:y' });
    assert.equal(await noRole.check(), true);
    assert.equal(await noRole.check(), true, 'remembered: PING only');
  });

  test('a silent server: sends and a check() asked while an earlier batch is stuck each fail within their own confirmTimeoutMs', async (t) => {
    const redis = serverFor(t);
    if (redis === undefined) return;
    // Frozen, the proxy keeps the connection open and silent. ioredis keeps one auto-pipelined
    // batch in flight and queues later commands unsent, their commandTimeout not started yet.
    const proxy = await TcpProxy.start(redis.port);
    t.after(() => proxy.close());
    const confirmTimeoutMs = 4_000;
    const sink = sinkFor({ url: proxy.via(redis.url), confirmTimeoutMs, stream: 'silent' });
    const signal = new AbortController().signal;
    await sink.send(relayMessage(), { signal });

    proxy.freeze();
    const events: string[] = [];
    const outcome = (name: string) =>
      [
        () => events.push(`${name} confirmed`),
        (error: unknown) =>
          events.push(error instanceof SinkUnavailableError ? `${name} unavailable` : `${name}: ${String(error)}`),
      ] as const;
    const first = relayMessages(4).map((m) => sink.send(m, { signal }).then(...outcome('first')));
    // Two event-loop turns: the sends reach ioredis after a microtask, and its auto-pipeline goes out
    // in a setImmediate of its own, so the first batch is written before the second is asked.
    for (let turn = 0; turn < 2; turn++) await new Promise((resolve) => setImmediate(resolve));
    const later = relayMessages(4).map((m) => sink.send(m, { signal }).then(...outcome('later')));
    const checked = sink.check().then((up) => events.push(`check ${up}`));
    // Each bounded by its own timeout, the later sends fail before 1.5 x confirmTimeoutMs has passed
    // since they were asked; queued behind the first batch, they would wait for up to 2 x.
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        events.push('1.5 x confirmTimeoutMs');
        resolve();
      }, confirmTimeoutMs * 1.5);
    });
    await Promise.race([Promise.all([...first, ...later, checked]), bound]);
    clearTimeout(timer);
    proxy.thaw();
    assert.deepEqual(events.toSorted(), [
      'check false',
      ...Array<string>(4).fill('first unavailable'),
      ...Array<string>(4).fill('later unavailable'),
    ]);
  });

  test('an unreachable server: retryable, password redacted, check() false; an aborted send rejects with its reason', async (t) => {
    if (serverFor(t) === undefined) return;
    const down = redisStreamSink({ url: 'redis://relay:s3cret@127.0.0.1:1', connectTimeoutMs: 2_000, reconnectWaitMs: 60_000 });
    t.after(() => down.close());
    const signal = new AbortController().signal;
    const first = await down.send(relayMessage(), { signal }).then(
      () => assert.fail('sent to port 1'),
      (error: unknown) => error,
    );
    assert.ok(first instanceof SinkUnavailableError, String(first));
    assert.doesNotMatch(first.message, /s3cret/);
    assert.match(first.message, /redis:\/\/relay:\*\*\*@127\.0\.0\.1:1/);
    // The client waits its reconnect pause (60 s here): the next send fails at once, no new dial.
    await assert.rejects(down.send(relayMessage(), { signal }), /the client reconnects by itself/);
    assert.equal(await down.check(), false);

    const controller = new AbortController();
    controller.abort(new Error('relay stopping'));
    await assert.rejects(sinkFor().send(relayMessage(), { signal: controller.signal }), /relay stopping/);
  });
});

describe('redisStreamSink and the database it writes to', () => {
  test('the primary demoted in place (READONLY) while its address moves to the new one: check() is down, and the sink reconnects instead of failing for good', async (t) => {
    // Reproduction (review finding): the open connection stayed on the demoted node, every XADD got
    // READONLY for good, and check() (a PING, which a replica answers) said up all along.
    if (serverFor(t) === undefined) return;
    const old = await startRedisServer();
    const promoted = await startRedisServer();
    if ('skip' in old || 'skip' in promoted) return;
    t.after(async () => {
      await old.close();
      await promoted.close();
    });
    const signal = new AbortController().signal;
    const proxy = await TcpProxy.start(Number(new URL(old.url).port));
    t.after(() => proxy.close());
    const sink = redisStreamSink({ url: proxy.via(old.url), stream: 'failover', reconnectWaitMs: 50 });
    sinks.push(sink);
    await sink.send(relayMessage(), { signal });
    const oldAdmin = new Redis(old.url).on('error', () => undefined);
    t.after(() => {
      oldAdmin.disconnect();
    });
    const promotedPort = Number(new URL(promoted.url).port);
    await oldAdmin.call('REPLICAOF', '127.0.0.1', String(promotedPort));

    await assert.rejects(sink.send(relayMessage(), { signal }), (error: unknown) => {
      assert.ok(error instanceof SinkUnavailableError, String(error));
      assert.match(error.reason, /READONLY/);
      return true;
    });
    assert.equal(await sink.check(), false, 'check(): down while the node it writes to is a replica');

    proxy.retarget(promotedPort);
    const failures: string[] = [];
    await waitFor(
      async () => {
        try {
          await sink.send(relayMessage(), { signal });
          return true;
        } catch (error) {
          failures.push(String(error));
          return false;
        }
      },
      { what: 'a send to reach the promoted primary', timeoutMs: 10_000 },
    );
    assert.ok(
      failures.every((f) => /READONLY|connect|closed|writeable/i.test(f)),
      failures.join('\n'),
    );
    assert.equal(await sink.check(), true);
    const promotedAdmin = new Redis(promoted.url).on('error', () => undefined);
    t.after(() => {
      promotedAdmin.disconnect();
    });
    assert.equal(await promotedAdmin.xlen('failover'), 1);
  });

  test('a database the server does not have fails every send (rows kept), instead of writing to database 0', async (t) => {
    const running = serverFor(t);
    if (running === undefined) return;
    // Reproduction: before the sink selected and checked the database itself, ioredis reported the
    // failed SELECT as an 'error' event only, and the XADD below was confirmed in database 0.
    const sink = sinkFor({ url: `${running.url}/16`, stream: 'wrong-db', connectTimeoutMs: 2_000 });
    const signal = new AbortController().signal;
    for (let attempt = 0; attempt < 2; attempt++) {
      const error = await sink.send(relayMessage(), { signal }).then(
        () => assert.fail('confirmed a send to a database the server does not have'),
        (failure: unknown) => failure,
      );
      assert.ok(error instanceof SinkUnavailableError, String(error));
      assert.match(error.message, /cannot select database 16 .*DB index is out of range/);
    }
    assert.equal(await (admin as Redis).exists('wrong-db'), 0, 'nothing was written to database 0');

    // Redis not there at the first connect (a compose start-up): ioredis connects later by itself,
    // and that connection is checked by the first send that uses it, as a first connect is. Before,
    // only the first connect was checked, and this send was confirmed in database 0.
    const port = await freePort();
    const late = sinkFor({
      url: `redis://127.0.0.1:${port}/16`,
      stream: 'wrong-db',
      connectTimeoutMs: 1_000,
      reconnectWaitMs: 50,
    });
    await assert.rejects(late.send(relayMessage(), { signal }), /cannot connect/);
    const sockets = new Set<Socket>();
    const forward = createServer((socket) => {
      const upstream = connect(running.port, '127.0.0.1');
      sockets.add(socket).add(upstream);
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    await new Promise<void>((resolve) => forward.listen(port, '127.0.0.1', resolve));
    t.after(async () => {
      await late.close();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) =>
        forward.close(() => {
          resolve();
        }),
      );
    });
    // Until ioredis has reconnected a send fails as not connected; then it must fail the check.
    let failure: Error | undefined;
    for (let attempt = 0; attempt < 200; attempt++) {
      failure = await late.send(relayMessage(), { signal }).then(
        () => assert.fail('confirmed a send to a database the server does not have, after a reconnect'),
        (error: unknown) => error as Error,
      );
      if (!/not connected/.test(failure.message)) break;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    assert.match(String(failure?.message), /cannot select database 16 .*DB index is out of range/);
    assert.equal(await (admin as Redis).exists('wrong-db'), 0, 'nothing was written to database 0');

    // A database it has: the entry lands there, not in database 0.
    const other = sinkFor({ url: `${running.url}/3`, stream: 'db-three' });
    await other.send(relayMessage(), { signal });
    assert.equal(await (admin as Redis).exists('db-three'), 0);
    const inThree = new Redis(`${running.url}/3`);
    t.after(() => {
      inThree.disconnect();
    });
    assert.equal(await inThree.xlen('db-three'), 1);
  });
});

describe('redisStreamSink options and its client', () => {
  test('bad options throw InvalidOptionError naming the option; credentials are not shown', () => {
    const cases: [unknown, string][] = [
      [{}, 'url'],
      [{ url: 'http://x' }, 'url'],
      [{ url: 'redis://x', strem: 'a' }, 'strem'],
      [{ url: 'redis://x', stream: '' }, 'stream'],
      [{ url: 'redis://x', stream: '{nope}' }, 'stream'],
      [{ url: 'redis://x', maxLen: 0 }, 'maxLen'],
      [{ url: 'redis://x', maxLen: 1.5 }, 'maxLen'],
      [{ url: 'redis://x', approximate: true }, 'approximate'],
      [{ url: 'redis://x', maxLen: 5, approximate: 'yes' }, 'approximate'],
      [{ url: 'redis://x', confirmTimeoutMs: 0 }, 'confirmTimeoutMs'],
      [{ url: 'redis://x', redisOptions: [] }, 'redisOptions'],
      [{ url: 'redis://x', redisOptions: { enableOfflineQueue: true } }, 'redisOptions.enableOfflineQueue'],
      [{ url: 'redis://x', redisOptions: { maxRetriesPerRequest: null } }, 'redisOptions.maxRetriesPerRequest'],
      // The URL's path is the database (ioredis parseInt()s it: `/events` was NaN, database 0).
      [{ url: 'redis://x:6379/events' }, 'url'],
      [{ url: 'redis://x:6379/1.5' }, 'url'],
      [{ url: 'redis://x:6379/-1' }, 'url'],
      // Query parameters become ioredis options ahead of the sink's own.
      [{ url: 'redis://x:6379?enableOfflineQueue=no' }, 'url'],
      [{ url: 'redis://x:6379?commandTimeout=1' }, 'url'],
      [{ url: 'redis://x:6379?db=2' }, 'url'],
      [{ url: 'redis://x', redisOptions: { db: 'two' } }, 'redisOptions.db'],
      [{ url: 'redis://x', redisOptions: { db: -1 } }, 'redisOptions.db'],
      [{ url: 'redis://x/2', redisOptions: { db: 3 } }, 'redisOptions.db'],
    ];
    for (const [options, option] of cases) {
      assert.throws(
        () => redisStreamSink(options as RedisStreamSinkOptions),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
        `${JSON.stringify(options)} names ${option}`,
      );
    }
    assert.throws(
      () => redisStreamSink({ url: 'ftp://u:s3cret@h' }),
      (error: unknown) => error instanceof InvalidOptionError && !error.message.includes('s3cret'),
    );
    assert.throws(
      () => redisStreamSink({ url: 'redis://u:s3cret@h:6379/events' }),
      (error: unknown) =>
        error instanceof InvalidOptionError && /path "\/events"/.test(error.message) && !error.message.includes('s3cret'),
    );
    // Good ones: a database in the path, or in redisOptions.db, or both agreeing.
    assert.equal(resolveRedisStreamOptions({ url: 'redis://x:6379/2' }).db, 2);
    assert.equal(resolveRedisStreamOptions({ url: 'redis://x', redisOptions: { db: 3 } }).db, 3);
    assert.equal(resolveRedisStreamOptions({ url: 'redis://x/3', redisOptions: { db: 3 } }).db, 3);
    assert.equal(resolveRedisStreamOptions({ url: 'redis://x', redisOptions: { db: '4' } }).db, 4);
    assert.equal(resolveRedisStreamOptions({ url: 'redis://x:6379/0' }).db, undefined);
    assert.equal(resolveRedisStreamOptions({ url: 'redis://x:6379/?family=6' }).db, undefined);
  });

  test('a missing client is MissingPeerDependencyError, thrown by the send that needs it (lazy loader, pointed at a module that does not exist)', async () => {
    const sink = createRedisStreamSink(resolveRedisStreamOptions({ url: 'redis://127.0.0.1:1' }), () =>
      loadPeer('txoutbox-no-such-client', 'redisStreamSink()'),
    );
    for (let i = 0; i < 2; i++) {
      await assert.rejects(sink.send(relayMessage(), { signal: new AbortController().signal }), (error: unknown) => {
        assert.ok(error instanceof MissingPeerDependencyError, String(error));
        assert.match(error.message, /redisStreamSink\(\) needs the optional peer dependency "txoutbox-no-such-client"/);
        return true;
      });
    }
    assert.equal(await sink.check(), false);
    await sink.close();
  });
});
