/**
 * outbox.relay() through redisStreamSink() to a real redis-server (test/support/redis-server.ts):
 * rows published in transactions become stream entries and are read back; the server restarted
 * under a relay loses nothing (duplicates counted: Redis cannot deduplicate); a key that is not a
 * stream ends the row in the DLQ with Redis's reason. architecture/relay.md, "Redis Streams sink".
 */
import assert from 'node:assert/strict';
import { after, before, describe, test, type TestContext } from 'node:test';

import { Redis } from 'ioredis';

import { ConstantRetry } from '../../src/index.js';
import { redisStreamSink } from '../../src/relay/index.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { type RedisServer, startRedisServer } from '../support/redis-server.js';
import { publishRelayRows, rowCount, traceparentOf } from '../support/relay-rows.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

let server: RedisServer | undefined;
let skip: string | undefined;
let admin: Redis | undefined;

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
  admin?.disconnect();
  await server?.close();
});

function serverFor(t: TestContext): RedisServer | undefined {
  if (server === undefined) t.skip(skip);
  return server;
}

interface Entry {
  readonly id: string;
  readonly body: { key: string; seq: number };
  readonly headers: Record<string, string>;
}

/** Every entry of `stream`, in stream order. */
async function readStream(stream: string): Promise<Entry[]> {
  const entries = await (admin as Redis).xrange(stream, '-', '+');
  return entries.map(([, fields]) => {
    const value = (name: string): string => fields[fields.indexOf(name) + 1] ?? '';
    return {
      id: value('id'),
      body: JSON.parse(value('payload')) as Entry['body'],
      headers: JSON.parse(value('headers')) as Record<string, string>,
    };
  });
}

describe('outbox.relay → redisStreamSink → Redis Streams', () => {
  test('committed rows become entries with their bodies, headers, trace context and ids, in order per key; the table empties', async (t) => {
    const redis = serverFor(t);
    if (redis === undefined) return;
    const table = 'relay_redis_roundtrip';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    const sink = redisStreamSink({ url: redis.url, stream: 'e2e:{queue}' });
    outbox.relay('orders', sink, FAST_POLL);
    outbox.start();
    await publishRelayRows(db.pool, outbox, 'orders', 1_000, 25);
    await waitFor(async () => (await rowCount(db.pool, table)) === 0, {
      timeoutMs: 60_000,
      what: 'every row relayed and deleted',
    });
    assert.equal(await outbox.ping(), true);
    await outbox.stop();

    const entries = await readStream('e2e:orders');
    assert.equal(entries.length, 1_000);
    const lastSeq = new Map<string, number>();
    for (const { id, body, headers } of entries) {
      assert.match(id, new RegExp(`${table}:[0-9a-f]{12}:\\d+$`));
      assert.equal(headers['correlation-id'], `corr-${body.seq}`);
      assert.equal(headers['content-type'], 'application/json');
      assert.equal(headers.traceparent, traceparentOf(body.seq));
      assert.equal(headers.tracestate, 'txoutbox=e2e');
      assert.equal(headers['x-seq'], String(body.seq));
      assert.ok(body.seq > (lastSeq.get(body.key) ?? -1), `key ${body.key}: ${body.seq} after ${lastSeq.get(body.key)}`);
      lastSeq.set(body.key, body.seq);
    }
    assert.deepEqual(sink.stats, { confirmed: 1_000 });
  });

  test('the server restarted mid-relay: ping() says down meanwhile, then every row is appended (duplicates counted), none lost', async (t) => {
    const redis = serverFor(t);
    if (redis === undefined) return;
    const table = 'relay_redis_restart';
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    const total = 3_000;
    await publishRelayRows(db.pool, outbox, 'orders', total, 50);
    const sink = redisStreamSink({ url: redis.url, stream: 'e2e-restart', confirmTimeoutMs: 2_000, reconnectWaitMs: 50 });
    // A short backoff: the outage is seconds, and the test waits for the rows to come back.
    outbox.relay('orders', sink, { ...FAST_POLL, retry: new ConstantRetry({ delayMs: 200 }) });
    outbox.start();
    await waitFor(async () => (await rowCount(db.pool, table)) <= total - 500, { timeoutMs: 60_000, what: '500 rows relayed' });
    await redis.stop();
    await waitFor(async () => !(await outbox.ping()), { what: 'ping() false while the server is down' });
    assert.ok((await rowCount(db.pool, table)) > 0, 'rows wait in the table while the server is down');
    await redis.restart();
    await waitFor(async () => (await rowCount(db.pool, table)) === 0, {
      timeoutMs: 60_000,
      what: 'the rest relayed after the restart',
    });
    assert.equal(await outbox.ping(), true);
    await outbox.stop();

    const entries = await readStream('e2e-restart');
    const ids = new Set(entries.map((e) => e.id));
    assert.equal(ids.size, total, `${total - ids.size} rows lost`);
    const duplicates = entries.length - ids.size;
    t.diagnostic(`restart mid-relay: 0 lost, ${duplicates} duplicate entries of ${total} (consumers dedupe by the id field)`);
    // A duplicate is an XADD applied whose reply was lost: at most the 64 sends in flight.
    assert.ok(duplicates <= 64, `${duplicates} duplicates`);
  });

  test("a key that is not a stream ends the row in the DLQ with Redis's reason; other rows go on", async (t) => {
    const redis = serverFor(t);
    if (redis === undefined) return;
    const table = 'relay_redis_refusal';
    await (admin as Redis).set('e2e-taken', 'a string');
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    const sink = redisStreamSink({ url: redis.url, stream: (m) => (m.queue === 'lost' ? 'e2e-taken' : `e2e-${m.queue}`) });
    outbox.relay(['lost', 'kept'], sink, FAST_POLL);
    outbox.start();
    await inTransaction(db.pool, async (client) => {
      await outbox.publish(client, 'lost', { n: 1 });
      await outbox.publish(client, 'kept', { n: 2 });
    });
    await waitFor(async () => (await rowCount(db.pool, table)) === 0, { what: 'every row ended' });
    const dead = (await outbox.dlq.list({})).rows;
    await outbox.stop();
    assert.equal(dead.length, 1);
    assert.equal(dead[0]?.queue, 'lost');
    assert.equal(dead[0]?.failureReason, 'rejected');
    assert.match(dead[0]?.lastException ?? '', /WRONGTYPE .*\(XADD to stream "e2e-taken"\)/);
    assert.equal((await readStream('e2e-kept')).length, 1);
  });
});
