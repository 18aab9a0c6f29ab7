import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';

import { Registry } from 'prom-client';
import { z } from 'zod';

import {
  type AckPolicy,
  ExponentialRetry,
  InvalidBodyError,
  Outbox,
  type OutboxEvent,
  type RelaySink,
  type StandardSchemaV1,
} from '../../src/index.js';
import { prometheusMiddleware, prometheusRecorder } from '../../src/prometheus/index.js';
import { webhookSink } from '../../src/relay/index.js';
import { useTestDatabase } from '../support/database.js';
import { EventLog } from '../support/events.js';
import { remaining } from '../support/publish.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { TestLogger } from '../support/test-logger.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';
import { WebhookReceiver } from '../support/webhook-receiver.js';

const db = useTestDatabase(import.meta.url);
const logger = new TestLogger();

const order = z.object({
  orderId: z.string(),
  items: z.array(z.object({ sku: z.string(), qty: z.number().int().positive() })),
  currency: z.string().default('EUR'),
});
/** Consume-side transform: the stored text becomes a number for the handler. */
const amount = z.object({ cents: z.string().transform((text) => Number.parseInt(text, 10)) });
const SCHEMAS = { 'order.created': order, 'payment.amount': amount };

/**
 * An Outbox of `table` with the test's schemas, an event log and Prometheus on a fresh registry;
 * stopped after the file (leak guard). `schemas: false` is the same table without any schema.
 */
async function outboxOf(table: string) {
  const log = new EventLog();
  const registry = new Registry();
  const outbox = new Outbox({
    pool: db.pool,
    table,
    logger,
    recorder: [log.recorder, prometheusRecorder({ registry })],
    middlewares: [prometheusMiddleware({ registry })],
    schemas: SCHEMAS,
  });
  db.onCleanup(() => outbox.stop());
  await outbox.migrate();
  const plain = new Outbox({ pool: db.pool, table, logger });
  db.onCleanup(() => plain.stop());
  return { outbox, plain, log, registry };
}

async function metric(registry: Registry, name: string, labels: Record<string, string>): Promise<number | undefined> {
  for (const family of await registry.getMetricsAsJSON()) {
    for (const entry of family.values as { value: number; labels: Record<string, string>; metricName?: string }[]) {
      const matches = Object.entries(labels).every(([key, value]) => entry.labels[key] === value);
      if ((entry.metricName ?? family.name) === name && matches) return entry.value;
    }
  }
  return undefined;
}

async function payloads(table: string, queue: string): Promise<unknown[]> {
  const { rows } = await db.pool.query<{ payload: Buffer }>(`SELECT payload FROM ${table} WHERE queue = $1 ORDER BY id`, [queue]);
  return rows.map((row) => JSON.parse(row.payload.toString('utf8')) as unknown);
}

describe('publish validates bodies against their queue schema', () => {
  test('an invalid body throws InvalidBodyError before any INSERT; the rest of the transaction commits', async () => {
    const table = 'txoutbox.pub_invalid';
    const { outbox, log } = await outboxOf(table);
    await db.pool.query('CREATE TABLE pub_invalid_orders (id text PRIMARY KEY)');
    let thrown: unknown;
    await inTransaction(db.pool, async (client) => {
      await client.query(`INSERT INTO pub_invalid_orders VALUES ('o1')`);
      try {
        // Typed: the compiler refuses this body; the cast stands for data that escaped the types (JSON input).
        await outbox.publish(client, 'order.created', { orderId: 'o1', items: [{ sku: 'a', qty: 0 }] });
      } catch (error) {
        thrown = error;
      }
      // The transaction is not aborted: nothing was sent for the refused publish.
      await client.query(`INSERT INTO pub_invalid_orders VALUES ('o2')`);
    });
    assert.ok(thrown instanceof InvalidBodyError, String(thrown));
    assert.equal(thrown.code, 'INVALID_BODY');
    assert.equal(thrown.queue, 'order.created');
    assert.equal(thrown.phase, 'publish');
    assert.deepEqual(
      thrown.issues.map((issue) => issue.path),
      ['items[0].qty'],
    );
    assert.match(
      thrown.message,
      /publish to "order\.created": .*items\[0\]\.qty: .*Pass a body that matches schemas\["order\.created"\]/,
    );
    assert.equal(await remaining(db.pool, 'order.created', table), 0);
    const { rows } = await db.pool.query<{ id: string }>('SELECT id FROM pub_invalid_orders ORDER BY id');
    assert.deepEqual(
      rows.map((row) => row.id),
      ['o1', 'o2'],
    );
    // Counted as a failed publish, like an unencodable body.
    const published = log.of('published');
    assert.equal(published.length, 1);
    assert.equal(published[0]?.status, 'error');
    assert.equal(published[0]?.exceptionType, 'InvalidBodyError');
  });

  test('publishBatch checks every body and inserts none when one fails, naming each by its place', async () => {
    const table = 'txoutbox.pub_batch';
    const { outbox } = await outboxOf(table);
    const bodies = [
      { orderId: 'o1', items: [] },
      { orderId: 2, items: [] },
      { orderId: 'o3', items: [{ sku: 'x', qty: -1 }] },
    ];
    await assert.rejects(
      inTransaction(db.pool, (client) => outbox.publishBatch(client, 'order.created', bodies as never)),
      (error: unknown) =>
        error instanceof InvalidBodyError &&
        isDeepStrictEqual(
          error.issues.map((issue) => issue.path),
          ['bodies[1].orderId', 'bodies[2].items[0].qty'],
        ),
    );
    assert.equal(await remaining(db.pool, 'order.created', table), 0);
  });

  test("the schema's output is what is stored (defaults applied); a queue without a schema is not validated", async () => {
    const table = 'txoutbox.pub_output';
    const { outbox } = await outboxOf(table);
    await inTransaction(db.pool, async (client) => {
      await outbox.publish(client, 'order.created', { orderId: 'o1', items: [{ sku: 'a', qty: 1 }] });
      await outbox.publishBatch(client, 'order.created', [{ orderId: 'o2', items: [], currency: 'USD' }]);
      // Typed, the Outbox knows only its schemas' queues; at run time any other queue is not validated.
      await (outbox as Outbox).publish(client, 'no.schema', { anything: ['goes'] });
    });
    assert.deepEqual(await payloads(table, 'order.created'), [
      { orderId: 'o1', items: [{ sku: 'a', qty: 1 }], currency: 'EUR' },
      { orderId: 'o2', items: [], currency: 'USD' },
    ]);
    assert.deepEqual(await payloads(table, 'no.schema'), [{ anything: ['goes'] }]);
  });

  test('an async schema is awaited before the INSERT', async () => {
    const table = 'txoutbox.pub_async';
    const taken = new Set(['taken']);
    const unique: StandardSchemaV1<string> = {
      '~standard': {
        version: 1,
        vendor: 'test',
        validate: async (value) => {
          await Promise.resolve();
          return typeof value === 'string' && !taken.has(value)
            ? { value }
            : { issues: [{ message: 'already taken', path: ['name'] }] };
        },
      },
    };
    const outbox = new Outbox({ pool: db.pool, table, logger, schemas: { names: unique } });
    db.onCleanup(() => outbox.stop());
    await outbox.migrate();
    await assert.rejects(
      inTransaction(db.pool, (client) => outbox.publish(client, 'names', 'taken')),
      (error: unknown) => error instanceof InvalidBodyError && /name: already taken/.test(error.message),
    );
    await inTransaction(db.pool, (client) => outbox.publish(client, 'names', 'free'));
    const { rows } = await db.pool.query<{ payload: Buffer }>(`SELECT payload FROM ${table} WHERE queue = 'names'`);
    assert.deepEqual(
      rows.map((row) => row.payload.toString('utf8')),
      ['free'],
    );
  });
  test('a schema that throws instead of returning issues fails the publish the same way, counted', async () => {
    const table = 'txoutbox.pub_throwing';
    const broken: StandardSchemaV1 = {
      '~standard': {
        version: 1,
        vendor: 'test',
        validate: () => {
          throw new TypeError('schema bug');
        },
      },
    };
    const log = new EventLog();
    const outbox = new Outbox({ pool: db.pool, table, logger, recorder: log.recorder, schemas: { q: broken } });
    db.onCleanup(() => outbox.stop());
    await outbox.migrate();
    await assert.rejects(
      inTransaction(db.pool, (client) => outbox.publish(client, 'q', 1)),
      (error: unknown) => error instanceof TypeError && error.message === 'schema bug',
    );
    await assert.rejects(
      inTransaction(db.pool, (client) => outbox.publishBatch(client, 'q', [1, 2])),
      (error: unknown) => error instanceof TypeError,
    );
    assert.deepEqual(
      log.of('published').map((event) => [event.status, event.exceptionType]),
      [
        ['error', 'TypeError'],
        ['error', 'TypeError'],
      ],
    );
    assert.equal(await remaining(db.pool, 'q', table), 0);
  });
});

describe('consume validates bodies before the handler runs', () => {
  for (const ackPolicy of ['nack_on_error', 'manual', 'reject_on_error'] satisfies AckPolicy[]) {
    test(`an invalid body ends in the DLQ with its issues, the handler never runs, and it is counted (ackPolicy ${ackPolicy})`, async () => {
      const table = `txoutbox.con_invalid_${ackPolicy}`;
      const { outbox, plain, log, registry } = await outboxOf(table);
      // Written by an Outbox without the schema (another service, an older version).
      const [bad] = await inTransaction(db.pool, (client) =>
        plain.publishBatch(client, 'order.created', [{ orderId: 42, items: [{ sku: 'a', qty: 'one' }] }]),
      );
      const ran: unknown[] = [];
      outbox.subscribe(
        'order.created',
        (message, ctx) => {
          ran.push(message.body);
          if (ackPolicy === 'manual') ctx.ack();
        },
        { ...FAST_POLL, ackPolicy },
      );
      outbox.start();
      const [written] = await log.waitFor('dlq_written');
      assert.deepEqual(ran, []);
      assert.equal(written?.failureReason, 'rejected');
      assert.equal(written?.exceptionType, 'InvalidBodyError');
      const terminal = log.of('nacked_terminal');
      assert.equal(terminal.length, 1);
      assert.equal(terminal[0]?.reason, 'rejected');
      assert.equal(terminal[0]?.exceptionType, 'InvalidBodyError');
      assert.equal(log.of('nacked_retried').length, 0, 'never retried: the same body would fail again');

      const { rows } = await db.pool.query<{
        original_id: string;
        failure_reason: string;
        last_exception: string;
        last_exception_type: string;
      }>(`SELECT original_id, failure_reason, last_exception, last_exception_type FROM ${table}_dlq`);
      assert.equal(rows.length, 1);
      assert.equal(rows[0]?.original_id, bad);
      assert.equal(rows[0]?.failure_reason, 'rejected');
      assert.equal(rows[0]?.last_exception_type, 'InvalidBodyError');
      assert.match(
        rows[0]?.last_exception ?? '',
        new RegExp(`message ${String(bad)} of "order\\.created": the body does not match`),
      );
      assert.match(rows[0]?.last_exception ?? '', /orderId: [^;]+; items\[0\]\.qty: /);
      assert.equal(await remaining(db.pool, 'order.created', table), 0);

      await waitFor(async () => (await metric(registry, 'txoutbox_outbox_terminal_total', { reason: 'rejected' })) === 1, {
        what: 'terminal_total{reason="rejected"} = 1',
      });
      assert.equal(
        await metric(registry, 'txoutbox_received_processed_messages_exceptions_total', { exception_type: 'InvalidBodyError' }),
        1,
      );
    });
  }

  test('in a transactional subscription an invalid body is ended the same way, and the valid one commits its writes', async () => {
    const table = 'txoutbox.con_transactional';
    const { outbox, plain, log } = await outboxOf(table);
    await db.pool.query('CREATE TABLE con_transactional_seen (order_id text NOT NULL)');
    await inTransaction(db.pool, (client) =>
      plain.publishBatch(client, 'order.created', [
        { orderId: 'bad', items: 'none' },
        { orderId: 'good', items: [] },
      ]),
    );
    outbox.subscribe(
      'order.created',
      async (message, ctx) => {
        await ctx.client.query('INSERT INTO con_transactional_seen VALUES ($1)', [message.body.orderId]);
      },
      { ...FAST_POLL, transactional: true },
    );
    outbox.start();
    await waitFor(() => log.of('acked').length === 1 && log.of('dlq_written').length === 1, { what: '1 acked, 1 dead' });
    assert.equal(log.of('dlq_written')[0]?.exceptionType, 'InvalidBodyError');
    const { rows } = await db.pool.query<{ order_id: string }>('SELECT order_id FROM con_transactional_seen');
    assert.deepEqual(
      rows.map((row) => row.order_id),
      ['good'],
    );
  });

  test("the handler gets the schema's output (defaults, transforms); other queues of the subscription run unvalidated", async () => {
    const table = 'txoutbox.con_valid';
    const { outbox, plain, log } = await outboxOf(table);
    await inTransaction(db.pool, async (client) => {
      await plain.publish(client, 'order.created', { orderId: 'o1', items: [{ sku: 'a', qty: 2 }], extra: 'stripped' });
      await plain.publish(client, 'payment.amount', { cents: '1250' });
      await plain.publish(client, 'audit', { raw: true });
    });
    const seen = new Map<string, unknown>();
    (outbox as Outbox).subscribe(
      ['order.created', 'payment.amount', 'audit'],
      (message) => {
        seen.set(message.queue, message.body);
      },
      FAST_POLL,
    );
    outbox.start();
    await log.waitFor('acked', 3);
    assert.deepEqual(seen.get('order.created'), { orderId: 'o1', items: [{ sku: 'a', qty: 2 }], currency: 'EUR' });
    assert.deepEqual(seen.get('payment.amount'), { cents: 1250 });
    assert.deepEqual(seen.get('audit'), { raw: true });
    assert.equal(log.of('nacked_terminal').length, 0);
  });

  test('an async schema runs inside the delivery: an invalid body is ended, a valid one handled, in publish order of its key', async () => {
    const table = 'txoutbox.con_async';
    const checked: string[] = [];
    const even: StandardSchemaV1<number> = {
      '~standard': {
        version: 1,
        vendor: 'test',
        validate: async (value) => {
          await new Promise((resolve) => setImmediate(resolve));
          checked.push(String(value));
          return typeof value === 'number' && value % 2 === 0 ? { value: value / 2 } : { issues: [{ message: 'odd' }] };
        },
      },
    };
    const log = new EventLog();
    const outbox = new Outbox({ pool: db.pool, table, logger, recorder: log.recorder, schemas: { numbers: even } });
    db.onCleanup(() => outbox.stop());
    await outbox.migrate();
    const plain = new Outbox({ pool: db.pool, table, logger });
    db.onCleanup(() => plain.stop());
    await inTransaction(db.pool, (client) => plain.publishBatch(client, 'numbers', [2, 3, 4], { orderingKey: 'k' }));
    const handled: number[] = [];
    outbox.subscribe('numbers', (message) => void handled.push(message.body), { ...FAST_POLL, concurrency: 4 });
    outbox.start();
    await waitFor(() => log.of('acked').length === 2 && log.of('dlq_written').length === 1, { what: '2 acked, 1 dead' });
    assert.deepEqual(handled, [1, 2]);
    assert.deepEqual(checked, ['2', '3', '4'], 'one key: validated one at a time, in publish order');
    const events = log.events.filter((event: OutboxEvent) => event.type === 'acked' || event.type === 'nacked_terminal');
    assert.deepEqual(
      events.map((event) => event.type),
      ['acked', 'nacked_terminal', 'acked'],
    );
  });
});

describe('relay validates like a subscription', () => {
  test('an invalid row is never sent (DLQ, rejected); a valid one is sent as stored', async () => {
    const table = 'txoutbox.relay_checked';
    const { outbox, plain, log } = await outboxOf(table);
    await inTransaction(db.pool, (client) =>
      plain.publishBatch(client, 'order.created', [{ orderId: 'bad' }, { orderId: 'good', items: [] }]),
    );
    const sent: string[] = [];
    const sink: RelaySink = {
      name: 'memory',
      send: (message) => {
        sent.push(message.payload.toString('utf8'));
        return Promise.resolve();
      },
      close: () => Promise.resolve(),
    };
    outbox.relay('order.created', sink, FAST_POLL);
    outbox.start();
    await waitFor(() => log.of('acked').length === 1 && log.of('dlq_written').length === 1, { what: '1 sent, 1 dead' });
    // The stored bytes, not the schema's output: a relay forwards what was published.
    assert.deepEqual(sent, ['{"orderId":"good","items":[]}']);
    assert.equal(log.of('dlq_written')[0]?.exceptionType, 'InvalidBodyError');
  });
});

/** A schema whose validate throws instead of returning issues (a bug, or an async check's failing I/O), sync or async. */
function throwingSchema(async: boolean): StandardSchemaV1 {
  return {
    '~standard': {
      version: 1,
      vendor: 'test',
      validate: async
        ? () => Promise.reject(new TypeError('schema bug (async)'))
        : () => {
            throw new TypeError('schema bug');
          },
    },
  };
}

/** Bytes labelled JSON that are not JSON: what another producer (or a Buffer relabelled at publish) can store. */
const NOT_JSON = Buffer.from('{"a": 1,,}');
const LABELLED_JSON = { headers: { 'content-type': 'application/json' } };

/**
 * An Outbox of `table` with `schemas` and an event log, and `plain`, the same table without any
 * schema (the other producer); both stopped after the file.
 */
async function schemaOutbox(table: string, schemas: Record<string, StandardSchemaV1>) {
  const log = new EventLog();
  const outbox = new Outbox({ pool: db.pool, table, logger, recorder: log.recorder, schemas });
  db.onCleanup(() => outbox.stop());
  await outbox.migrate();
  const plain = new Outbox({ pool: db.pool, table, logger });
  db.onCleanup(() => plain.stop());
  return { outbox: outbox as Outbox, plain, log };
}

interface DeadRow {
  original_id: string;
  failure_reason: string;
  last_exception: string;
  last_exception_type: string;
}

async function deadRows(table: string): Promise<DeadRow[]> {
  const { rows } = await db.pool.query<DeadRow>(
    `SELECT original_id, failure_reason, last_exception, last_exception_type FROM ${table}_dlq ORDER BY original_id`,
  );
  return rows;
}

async function attemptsOf(table: string, id: string | null): Promise<number> {
  const { rows } = await db.pool.query<{ attempts_count: number }>(`SELECT attempts_count FROM ${table} WHERE id = $1`, [id]);
  return rows[0]?.attempts_count ?? 0;
}

/**
 * Waits until the row ended in the DLQ or failed `attempts` times: a row that is retried instead of
 * ended must fail the test with what happened, not time out.
 */
async function endedOrRetried(log: EventLog, table: string, id: string | null, attempts = 3): Promise<void> {
  await waitFor(async () => log.of('dlq_written').length > 0 || (await attemptsOf(table, id)) >= attempts, {
    what: `row ${String(id)} dead-lettered or failed ${attempts} times`,
  });
  const retried = await attemptsOf(table, id);
  assert.equal(
    log.of('nacked_retried').length,
    0,
    `never retried (the same body fails the same way): attempts_count is ${retried}, DLQ rows: ${(await deadRows(table)).length}`,
  );
}

describe('a body that cannot be decoded is ended as rejected, never retried; a throwing schema fails like a handler', () => {
  let receiver: WebhookReceiver;
  before(async () => {
    receiver = await WebhookReceiver.start();
  });
  after(async () => {
    await receiver.stop();
  });
  /** A relay that, before the fix, retried forever: no maxAttempts, as RELAY_DEFAULTS, but fast. */
  const RELAY_OPTIONS = { ...FAST_POLL, retry: new ExponentialRetry({ initialDelayMs: 10, maxDelayMs: 20 }) };

  test('relay: bytes labelled JSON that are not JSON are never sent, end in the DLQ, and release their key', async () => {
    const table = 'txoutbox.relay_undecodable';
    const { outbox, plain, log } = await schemaOutbox(table, { q: z.object({ a: z.number() }) });
    const { bad, good } = await inTransaction(db.pool, async (client) => ({
      bad: await plain.publish(client, 'q', NOT_JSON, { ...LABELLED_JSON, orderingKey: 'k' }),
      good: await plain.publish(client, 'q', { a: 2 }, { orderingKey: 'k' }),
    }));
    outbox.relay('q', webhookSink({ url: receiver.url('/undecodable') }), RELAY_OPTIONS);
    outbox.start();
    await endedOrRetried(log, table, bad);
    const dead = await deadRows(table);
    assert.deepEqual(
      dead.map((row) => [row.original_id, row.failure_reason, row.last_exception_type]),
      [[bad, 'rejected', 'InvalidBodyError']],
    );
    assert.match(
      dead[0]?.last_exception ?? '',
      new RegExp(`message ${String(bad)} of "q": .*\\(root\\): the body is labelled application/json but cannot be decoded: `),
    );
    const terminal = log.of('nacked_terminal');
    assert.deepEqual(
      terminal.map((event) => [event.reason, event.exceptionType]),
      [['rejected', 'InvalidBodyError']],
    );
    // The key's next row goes out once the undecodable one ended; the bad bytes never did.
    await waitFor(async () => (await remaining(db.pool, 'q', table)) === 0, { what: 'the good row sent and deleted' });
    const sent = receiver.requests.filter((request) => request.path === '/undecodable');
    assert.deepEqual(
      sent.map((request) => request.body.toString('utf8')),
      ['{"a":2}'],
    );
    assert.ok(String(sent[0]?.headers['idempotency-key']).endsWith(`:${String(good)}`), 'the good row, by its id');
  });

  for (const async of [false, true]) {
    test(`relay: a schema whose validate ${async ? 'rejects' : 'throws'} fails like a handler: retried with that error, visibly, nothing sent, the row kept`, async () => {
      const table = `txoutbox.relay_throwing_${async ? 'async' : 'sync'}`;
      const { outbox, plain, log } = await schemaOutbox(table, { q: throwingSchema(async) });
      const [id] = await inTransaction(db.pool, (client) => plain.publishBatch(client, 'q', [{ a: 1 }]));
      const path = `/throwing-${async ? 'async' : 'sync'}`;
      outbox.relay('q', webhookSink({ url: receiver.url(path) }), RELAY_OPTIONS);
      outbox.start();
      // An async schema may do I/O that fails for a while: ended at once, an outage's rows would be
      // dead-lettered (deleted, without a DLQ). Retried, they wait for the schema to work again.
      await waitFor(async () => (await attemptsOf(table, id ?? null)) >= 3, { what: 'three failed attempts' });
      await outbox.stop();
      assert.ok(log.of('nacked_retried').every((event) => event.exceptionType === 'TypeError'));
      assert.deepEqual(await deadRows(table), []);
      assert.equal(await remaining(db.pool, 'q', table), 1);
      assert.deepEqual(
        receiver.requests.filter((request) => request.path === path),
        [],
      );
    });
  }

  test('subscribe: an undecodable body is rejected on its first delivery, the handler never runs', async () => {
    const table = 'txoutbox.con_undecodable';
    const { outbox, plain, log } = await schemaOutbox(table, { q: z.object({ a: z.number() }) });
    const [bad] = await inTransaction(db.pool, (client) => plain.publishBatch(client, 'q', [NOT_JSON], LABELLED_JSON));
    const ran: unknown[] = [];
    outbox.subscribe('q', (message) => void ran.push(message.body), {
      ...FAST_POLL,
      retry: new ExponentialRetry({ initialDelayMs: 10, maxDelayMs: 20 }),
    });
    outbox.start();
    await endedOrRetried(log, table, bad ?? null);
    assert.deepEqual(ran, []);
    const dead = await deadRows(table);
    assert.deepEqual(
      dead.map((row) => [row.original_id, row.failure_reason, row.last_exception_type]),
      [[bad, 'rejected', 'InvalidBodyError']],
    );
    assert.match(dead[0]?.last_exception ?? '', /\(root\): the body is labelled application\/json but cannot be decoded: /);
  });

  for (const async of [false, true]) {
    test(`subscribe: a schema whose validate ${async ? 'rejects' : 'throws'} fails like a handler: retried by the policy, the handler never runs`, async () => {
      const table = `txoutbox.con_throwing_${async ? 'async' : 'sync'}`;
      const { outbox, plain, log } = await schemaOutbox(table, { q: throwingSchema(async) });
      const [id] = await inTransaction(db.pool, (client) => plain.publishBatch(client, 'q', [{ a: 1 }]));
      const ran: unknown[] = [];
      outbox.subscribe('q', (message) => void ran.push(message.body), {
        ...FAST_POLL,
        retry: new ExponentialRetry({ initialDelayMs: 10, maxDelayMs: 20, maxAttempts: 3 }),
      });
      outbox.start();
      await log.waitFor('dlq_written');
      assert.deepEqual(ran, []);
      assert.deepEqual(
        log.of('nacked_retried').map((event) => event.exceptionType),
        ['TypeError', 'TypeError'],
      );
      assert.deepEqual(
        (await deadRows(table)).map((row) => [row.original_id, row.failure_reason, row.last_exception_type]),
        [[id, 'retry_terminal', 'TypeError']],
      );
    });
  }
});
