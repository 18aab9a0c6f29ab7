/**
 * The statsd middleware against a real UDP listener on loopback: the lines a statsd server would
 * receive, in rejected's `prefix.host.consumer.key:value|type` format.
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { after, describe, test } from 'node:test';

import { ConstantRetry } from '../../src/index.js';
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
server.on('message', (datagram) => {
  received.push(...datagram.toString('utf8').split('\n').filter(Boolean));
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

  test('hostnames lose their domain and unsafe characters', () => {
    assert.equal(shortHostname('web-1.prod.example.com'), 'web-1');
    assert.equal(shortHostname('odd host'), 'odd_host');
  });
});
