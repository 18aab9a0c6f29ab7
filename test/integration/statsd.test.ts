/**
 * The statsd middleware against a real UDP listener on loopback: the lines a statsd server would
 * receive, in rejected's `prefix.host.consumer.key:value|type` format.
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { after, describe, test } from 'node:test';

import { ConstantRetry, type Middleware, NoRetry } from '../../src/index.js';
import { shortHostname, StatsdClient, statsdMiddleware } from '../../src/statsd/index.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

const server = createSocket('udp4');
const received: string[] = [];
/** Each datagram's lines, for what must arrive together. */
const datagrams: string[][] = [];
server.on('message', (datagram) => {
  const lines = datagram.toString('utf8').split('\n').filter(Boolean);
  datagrams.push(lines);
  received.push(...lines);
});
await new Promise<void>((resolve) => server.bind(0, '127.0.0.1', resolve));
const port = server.address().port;
after(() => {
  server.close();
});

describe('statsd', () => {
  test('per-message counters, timings and custom stats in rejected format', async () => {
    const client = new StatsdClient({ host: '127.0.0.1', port, prefix: 'shop' }, 'billing', newOutbox.logger);
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'sd_outbox', { middlewares: [statsdMiddleware(client)] });
    let failedOnce = false;
    outbox.subscribe(
      'q',
      async (message, ctx) => {
        ctx.stats.incr('invoices', 2);
        ctx.stats.set('queue_mood', 7);
        ctx.stats.observe('render', 0.25);
        if ((message.body as { n: number }).n === 2 && !failedOnce) {
          failedOnce = true;
          throw new RangeError('once');
        }
        await Promise.resolve();
      },
      { ...FAST_POLL, name: 'billing', retry: new ConstantRetry({ delayMs: 10, maxAttempts: 3 }) },
    );
    outbox.start();
    await inTransaction(db.pool, (c) => outbox.publishBatch(c, 'q', [{ n: 1 }, { n: 2 }, { n: 3 }]));
    await log.waitFor('acked', 3);
    const path = `shop.${shortHostname()}.billing`;
    await waitFor(() => received.filter((line) => line === `${path}.acked:1|c`).length === 3, {
      what: 'three acked lines',
    });
    const count = (line: string) => received.filter((r) => r === line).length;
    assert.equal(count(`${path}.processed:1|c`), 4);
    assert.equal(count(`${path}.error:1|c`), 1);
    assert.equal(count(`${path}.retried:1|c`), 1);
    assert.equal(count(`${path}.exception.RangeError:1|c`), 1);
    assert.equal(count(`${path}.invoices:2|c`), 4);
    assert.equal(count(`${path}.queue_mood:7|g`), 4);
    assert.equal(count(`${path}.render:250.000|ms`), 4);
    assert.equal(count(`${path}.published:3|c`), 1);
    assert.equal(received.filter((r) => r.startsWith(`${path}.processing_time:`) && r.endsWith('|ms')).length, 4);
    assert.equal(client.sendErrors, 0);
    client.close();
  });

  test('exception keys are one key segment each, and bounded: a class made at run time adds no key past the bound', async () => {
    // Reported (review): `exception.<Type>` took the class name as it was (a `:` or `|` broke the
    // line, a `.` nested the key) and had no bound (Prometheus and OpenTelemetry have maxExceptionTypes).
    const client = new StatsdClient({ host: '127.0.0.1', port, prefix: 'keys' }, 'errors', newOutbox.logger);
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'sd_exception_keys', {
      middlewares: [statsdMiddleware(client, { maxExceptionTypes: 3, logger: newOutbox.logger })],
    });
    outbox.subscribe(
      'q',
      (message) => {
        const n = (message.body as { n: number }).n;
        const Failure = class extends Error {};
        Object.defineProperty(Failure, 'name', { value: n === 0 ? 'a:b.c|d' : `Made${n}` });
        throw new Failure('fails');
      },
      { ...FAST_POLL, name: 'errors', retry: new NoRetry() },
    );
    outbox.start();
    await inTransaction(db.pool, (c) =>
      outbox.publishBatch(
        c,
        'q',
        [0, 1, 2, 3, 4, 5].map((n) => ({ n })),
      ),
    );
    await log.waitFor('nacked_terminal', 6);
    const path = `keys.${shortHostname()}.errors.exception.`;
    await waitFor(() => received.filter((line) => line.startsWith(path)).length === 6, { what: 'six exception lines' });
    const keys = new Set(received.filter((line) => line.startsWith(path)).map((line) => line.slice(path.length).split(':')[0]));
    assert.ok(keys.has('a_b_c_d'), [...keys].join(' '));
    assert.ok(keys.has('_other'), [...keys].join(' '));
    assert.equal(keys.size, 4, 'three admitted, the rest under _other');
    for (const line of received.filter((r) => r.startsWith(path))) assert.match(line, /^[^:|]+:1\|c$/);
    assert.ok(newOutbox.logger.messages('warn').some((m) => /statsdMiddleware: maxExceptionTypes \(3\) reached/.test(m)));
    client.close();
  });

  test('a middleware outside it that fails an acked run: counted as the error and retry written, the redelivery acked once', async () => {
    class AuditFailed extends Error {}
    const audit: Middleware = {
      name: 'audit',
      consume: async (ctx, next) => {
        await next();
        if (ctx.deliveriesCount === 1) throw new AuditFailed('audit log unavailable');
      },
    };
    const client = new StatsdClient({ host: '127.0.0.1', port, prefix: 'outer' }, 'audited', newOutbox.logger);
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'sd_outer_fail', {
      middlewares: [audit, statsdMiddleware(client)],
    });
    outbox.subscribe('q', () => undefined, {
      ...FAST_POLL,
      name: 'audited',
      retry: new ConstantRetry({ delayMs: 10, maxAttempts: 3 }),
    });
    outbox.start();
    await inTransaction(db.pool, (c) => outbox.publish(c, 'q', { n: 1 }));
    await log.waitFor('acked');
    const path = `outer.${shortHostname()}.audited`;
    const count = (line: string) => received.filter((r) => r === line).length;
    await waitFor(() => count(`${path}.acked:1|c`) + count(`${path}.error:1|c`) >= 2, { what: 'both runs counted' });
    await outbox.stop();
    assert.equal(count(`${path}.processed:1|c`), 2);
    assert.equal(count(`${path}.acked:1|c`), 1, 'only the redelivery was acked');
    assert.equal(count(`${path}.error:1|c`), 1, 'the first run wrote a retry');
    assert.equal(count(`${path}.retried:1|c`), 1);
    assert.equal(count(`${path}.exception.AuditFailed:1|c`), 1, 'typed by what failed the delivery');
    client.close();
  });

  test('a send failure is logged once and counted, never thrown into delivery', async () => {
    // A name that cannot resolve (.invalid is reserved): every send fails in the DNS lookup.
    const client = new StatsdClient({ host: 'statsd.invalid', port, prefix: 'shop' }, 'c', newOutbox.logger);
    client.increment('a');
    client.increment('b');
    await client.flush();
    await waitFor(() => client.sendErrors >= 1, { what: 'the failed send to be counted' });
    assert.equal(newOutbox.logger.messages('warn').filter((message) => message.startsWith('statsd send failed')).length, 1);
    client.close();
  });

  test('with a process number, gauges go to a key of their own per process; counters and timers stay shared', async () => {
    const path = `proc.${shortHostname()}.c`;
    const processes = [0, 3].map(
      (n) => new StatsdClient({ host: '127.0.0.1', port, prefix: 'proc', process: n }, 'c', newOutbox.logger),
    );
    for (const [i, client] of processes.entries()) {
      client.gauge('lag', 21 + i);
      client.gauge('debt', -2);
      client.increment('acked');
      client.timing('processing_time', 0.5);
      await client.flush();
    }
    await waitFor(() => received.includes(`${path}.debt.process_3:-2|g`), { what: 'the second process lines' });
    assert.deepEqual(
      received.filter((line) => line.startsWith(`${path}.`)),
      [0, 3].flatMap((n, i) => [
        `${path}.lag.process_${n}:${21 + i}|g`,
        `${path}.debt.process_${n}:0|g`,
        `${path}.debt.process_${n}:-2|g`,
        `${path}.acked:1|c`,
        `${path}.processing_time:500.000|ms`,
      ]),
      "a statsd server keeps a gauge key's last value: one key per process, never one flipping between them",
    );
    for (const client of processes) client.close();
  });

  test('a negative gauge is sent as 0 then the value, in one datagram: a bare -3|g is a delta to statsd', async () => {
    const client = new StatsdClient({ host: '127.0.0.1', port, prefix: 'neg' }, 'c', newOutbox.logger);
    const path = `neg.${shortHostname()}.c`;
    client.gauge('mood', 10);
    await client.flush();
    client.gauge('mood', -3);
    await client.flush();
    await waitFor(() => received.includes(`${path}.mood:-3|g`), { what: 'the negative gauge' });
    assert.deepEqual(
      received.filter((line) => line.startsWith(`${path}.mood:`)),
      [`${path}.mood:10|g`, `${path}.mood:0|g`, `${path}.mood:-3|g`],
      'Etsy statsd and Telegraf read -3|g as 10 - 3 = 7 unless the gauge is set to 0 first',
    );
    const withNegative = datagrams.filter((lines) => lines.includes(`${path}.mood:-3|g`));
    assert.deepEqual(withNegative, [[`${path}.mood:0|g`, `${path}.mood:-3|g`]], 'both lines in one datagram');

    // Lines are packed into datagrams of at most 1400 bytes: the pair is never split across two,
    // wherever the boundary falls (a lost or reordered datagram would turn it back into a delta).
    for (let filler = 0; filler < 40; filler += 1) {
      for (let i = 0; i < filler; i += 1) client.increment(`filler_${filler}_${i}`);
      client.gauge(`deep_${filler}`, -1.5);
    }
    await client.flush();
    await waitFor(() => received.includes(`${path}.deep_39:-1.5|g`), { what: 'the last negative gauge' });
    for (let filler = 0; filler < 40; filler += 1) {
      const negative = `${path}.deep_${filler}:-1.5|g`;
      const datagram = datagrams.find((lines) => lines.includes(negative));
      assert.ok(datagram !== undefined, negative);
      assert.equal(datagram[datagram.indexOf(negative) - 1], `${path}.deep_${filler}:0|g`, `${negative} follows its reset`);
    }
    client.gauge('zero', 0);
    client.gauge('positive', 2.5);
    await client.flush();
    await waitFor(() => received.includes(`${path}.positive:2.5|g`), { what: 'the positive gauge' });
    assert.deepEqual(
      received.filter((line) => line.startsWith(`${path}.zero:`) || line.startsWith(`${path}.positive:`)),
      [`${path}.zero:0|g`, `${path}.positive:2.5|g`],
      'a gauge of 0 or more is one line',
    );
    assert.equal(client.sendErrors, 0);
    client.close();
  });

  test('hostnames lose their domain and unsafe characters', () => {
    assert.equal(shortHostname('web-1.prod.example.com'), 'web-1');
    assert.equal(shortHostname('odd host'), 'odd_host');
  });
});
