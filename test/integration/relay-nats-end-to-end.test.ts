/**
 * outbox.relay() through natsSink() to a real nats-server with JetStream
 * (test/support/nats-server.ts): rows published in transactions arrive in the stream and are
 * consumed back; the server restarted under a relay loses nothing and stores nothing twice
 * (Nats-Msg-Id); a subject no stream captures ends the row in the DLQ with the reason.
 * architecture/relay.md, "NATS JetStream sink".
 */
import assert from 'node:assert/strict';
import { after, before, describe, test, type TestContext } from 'node:test';

import { connect, type JetStreamManager, nanos, type NatsConnection, StorageType } from 'nats';

import { ConstantRetry } from '../../src/index.js';
import { natsSink } from '../../src/relay/index.js';
import { useTestDatabase } from '../support/database.js';
import { type NatsServer, startNatsServer } from '../support/nats-server.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishRelayRows, rowCount, traceparentOf } from '../support/relay-rows.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
/** A second service's database: its own outbox table of the same name, its row ids from 1 too. */
const otherDb = useTestDatabase(import.meta.url);
const newOtherOutbox = outboxFactory(otherDb);

let server: NatsServer | undefined;
let skip: string | undefined;
let admin: NatsConnection | undefined;
let jsm: JetStreamManager | undefined;

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
  await admin?.close();
  await server?.close();
});

function serverFor(t: TestContext): NatsServer | undefined {
  if (server === undefined) t.skip(skip);
  return server;
}

async function addStream(name: string, subjects: string[]): Promise<void> {
  await (jsm as JetStreamManager).streams.add({ name, subjects, storage: StorageType.File, duplicate_window: nanos(120_000) });
}

interface Consumed {
  readonly body: { key: string; seq: number };
  readonly headers: Map<string, string>;
}

/** Every message the stream holds, in stream order. */
async function consumeAll(stream: string): Promise<Consumed[]> {
  const info = await (jsm as JetStreamManager).streams.info(stream);
  const out: Consumed[] = [];
  if (info.state.messages === 0) return out;
  const consumer = await (admin as NatsConnection).jetstream().consumers.get(stream);
  for await (const m of await consumer.consume()) {
    const headers = new Map<string, string>();
    for (const key of m.headers?.keys() ?? []) headers.set(key, m.headers?.get(key) ?? '');
    out.push({ body: JSON.parse(new TextDecoder().decode(m.data)) as Consumed['body'], headers });
    if (out.length === info.state.messages) break;
  }
  return out;
}

describe('outbox.relay → natsSink → NATS JetStream', () => {
  test('committed rows arrive with their bodies, headers, trace context and Nats-Msg-Id, in order per key; the table empties', async (t) => {
    const nats = serverFor(t);
    if (nats === undefined) return;
    const table = 'relay_nats_roundtrip';
    await addStream('E2E', ['e2e.>']);
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    const sink = natsSink({ servers: nats.url, subject: 'e2e.{queue}' });
    outbox.relay('orders', sink, FAST_POLL);
    outbox.start();
    await publishRelayRows(db.pool, outbox, 'orders', 1_000, 25);
    await waitFor(async () => (await rowCount(db.pool, table)) === 0, {
      timeoutMs: 60_000,
      what: 'every row relayed and deleted',
    });
    assert.equal(await outbox.ping(), true);
    await outbox.stop();

    const consumed = await consumeAll('E2E');
    assert.equal(consumed.length, 1_000);
    const lastSeq = new Map<string, number>();
    for (const { body, headers } of consumed) {
      assert.match(headers.get('Nats-Msg-Id') ?? '', new RegExp(`${table}:[0-9a-f]{12}:\\d+$`));
      assert.equal(headers.get('correlation-id'), `corr-${body.seq}`);
      assert.equal(headers.get('content-type'), 'application/json');
      assert.equal(headers.get('traceparent'), traceparentOf(body.seq));
      assert.equal(headers.get('tracestate'), 'txoutbox=e2e');
      assert.equal(headers.get('x-seq'), String(body.seq));
      assert.ok(body.seq > (lastSeq.get(body.key) ?? -1), `key ${body.key}: ${body.seq} after ${lastSeq.get(body.key)}`);
      lastSeq.set(body.key, body.seq);
    }
    assert.deepEqual(sink.stats, { confirmed: 1_000, duplicates: 0 });
  });

  test('the server restarted mid-relay: ping() says down meanwhile, then every row is stored exactly once', async (t) => {
    const nats = serverFor(t);
    if (nats === undefined) return;
    const table = 'relay_nats_restart';
    await addStream('E2E_RESTART', ['e2e-restart.>']);
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    const total = 3_000;
    await publishRelayRows(db.pool, outbox, 'orders', total, 50);
    const sink = natsSink({ servers: nats.url, subject: 'e2e-restart.{queue}', confirmTimeoutMs: 2_000, reconnectWaitMs: 100 });
    // A short backoff: the outage is seconds, and the test waits for the rows to come back.
    outbox.relay('orders', sink, { ...FAST_POLL, retry: new ConstantRetry({ delayMs: 200 }) });
    outbox.start();
    await waitFor(async () => (await rowCount(db.pool, table)) <= total - 500, { timeoutMs: 60_000, what: '500 rows relayed' });
    await nats.stop('SIGKILL');
    await waitFor(async () => !(await outbox.ping()), { what: 'ping() false while the server is down' });
    assert.ok((await rowCount(db.pool, table)) > 0, 'rows wait in the table while the server is down');
    await nats.restart();
    await waitFor(async () => (await rowCount(db.pool, table)) === 0, {
      timeoutMs: 60_000,
      what: 'the rest relayed after the restart',
    });
    assert.equal(await outbox.ping(), true);
    await outbox.stop();

    const consumed = await consumeAll('E2E_RESTART');
    const ids = new Set(consumed.map((c) => c.headers.get('Nats-Msg-Id')));
    assert.equal(ids.size, total, `${total - ids.size} rows lost`);
    assert.equal(consumed.length, total, 'none stored twice');
    t.diagnostic(`restart mid-relay: 0 lost, 0 stored twice, ${sink.stats.duplicates} resends acked as duplicates`);
  });

  test('two services relaying into one stream, their tables of one name and ids from 1 alike: every row is stored, none taken for a duplicate', async (t) => {
    // JetStream deduplicates by Nats-Msg-Id across the whole stream. A message id of `<table>:<row
    // id>` was the same for both services' row 1, 2, 3…: the second service's rows were answered
    // `duplicate`, taken as confirmed and deleted, never stored.
    const nats = serverFor(t);
    if (nats === undefined) return;
    const table = 'relay_nats_two_services';
    await addStream('E2E_SHARED', ['shared.>']);
    const services = [
      { outbox: newOutbox({ pool: db.pool, table }), pool: db.pool },
      { outbox: newOtherOutbox({ pool: otherDb.pool, table }), pool: otherDb.pool },
    ];
    const sinks = services.map(() => natsSink({ servers: nats.url, subject: 'shared.{queue}' }));
    for (const [i, { outbox, pool }] of services.entries()) {
      await outbox.migrate();
      await publishRelayRows(pool, outbox, 'orders', 20, 4);
      outbox.relay('orders', sinks[i] as (typeof sinks)[number], FAST_POLL);
      outbox.start();
    }
    for (const { pool } of services)
      await waitFor(async () => (await rowCount(pool, table)) === 0, { what: "each service's rows relayed" });
    for (const { outbox } of services) await outbox.stop();
    const consumed = await consumeAll('E2E_SHARED');
    assert.equal(consumed.length, 40, "both services' 20 rows stored");
    assert.equal(new Set(consumed.map((c) => c.headers.get('Nats-Msg-Id'))).size, 40);
    assert.deepEqual(
      sinks.map((sink) => sink.stats),
      [
        { confirmed: 20, duplicates: 0 },
        { confirmed: 20, duplicates: 0 },
      ],
    );
  });

  test('a subject no stream captures ends the row in the DLQ with the reason; captured rows go on', async (t) => {
    const nats = serverFor(t);
    if (nats === undefined) return;
    const table = 'relay_nats_refusal';
    await addStream('E2E_ROUTED', ['routed.>']);
    const outbox = newOutbox({ pool: db.pool, table });
    await outbox.migrate();
    const sink = natsSink({ servers: nats.url, subject: (m) => (m.queue === 'lost' ? 'nowhere.lost' : `routed.${m.queue}`) });
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
    assert.match(dead[0]?.lastException ?? '', /no JetStream stream captures subject "nowhere\.lost" \(503 no responders\)/);
    assert.equal((await consumeAll('E2E_ROUTED')).length, 1);
  });
});
