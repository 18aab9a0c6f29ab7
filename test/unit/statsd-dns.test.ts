/**
 * The statsd client's host lookup: resolved once and cached, not once per datagram. Datagrams go to
 * a real UDP socket bound on 127.0.0.1, and the lookups are the real `dns.lookup` (the `lookup`
 * seam only counts them), except in the two tests that need a DNS answer no real resolver here can
 * give (one that changes, one that never comes): those script it, and say so.
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { promises as dns } from 'node:dns';
import { after, describe, test } from 'node:test';

import { InvalidOptionError } from '../../src/errors.js';
import { type LookupAddress, shortHostname, StatsdClient } from '../../src/statsd/statsd-client.js';
import { TestLogger } from '../support/test-logger.js';
import { waitFor } from '../support/wait-for.js';

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

/** The real lookup, counted: every call is one getaddrinfo on libuv's threadpool. */
function countedLookup(): { lookup: LookupAddress; calls: string[] } {
  const calls: string[] = [];
  const lookup: LookupAddress = async (host, family) => {
    calls.push(`${host}/${family}`);
    return (await dns.lookup(host, { family })).address;
  };
  return { lookup, calls };
}

function lines(prefix: string, consumer: string, key: string): string[] {
  const line = `${prefix}.${shortHostname()}.${consumer}.${key}:1|c`;
  return received.filter((r) => r === line);
}

describe('statsd host lookup', () => {
  test('a host name is looked up once (with the socket family), not once per datagram', async () => {
    const { lookup, calls } = countedLookup();
    const client = new StatsdClient({ host: 'localhost', port, prefix: 'once' }, 'c', new TestLogger(), { lookup });
    // One flush is one datagram: 50 datagrams, each of which used to cost a getaddrinfo.
    for (let i = 0; i < 50; i += 1) {
      client.increment('sent');
      await client.flush();
    }
    await waitFor(() => lines('once', 'c', 'sent').length === 50, { what: 'the 50 datagrams' });
    assert.deepEqual(calls, ['localhost/4']);
    assert.equal(client.sendErrors, 0);
    client.close();
  });

  test('an IP literal is never looked up', async () => {
    const { lookup, calls } = countedLookup();
    const client = new StatsdClient({ host: '127.0.0.1', port, prefix: 'literal' }, 'c', new TestLogger(), { lookup });
    client.increment('sent');
    await client.flush();
    await waitFor(() => lines('literal', 'c', 'sent').length === 1, { what: 'the datagram' });
    assert.deepEqual(calls, []);
    client.close();
  });

  test('the address is looked up again once dnsCacheTtlMs has passed, without losing a datagram', async () => {
    const { lookup, calls } = countedLookup();
    const client = new StatsdClient({ host: 'localhost', port, prefix: 'ttl' }, 'c', new TestLogger(), {
      lookup,
      dnsCacheTtlMs: 200,
    });
    for (let i = 0; i < 5; i += 1) {
      client.increment('sent');
      await client.flush();
    }
    assert.equal(calls.length, 1, 'five datagrams well within the TTL: one lookup');
    let sent = 5;
    // Sends keep going to the cached address while the refresh runs: none waits for DNS.
    await waitFor(
      async () => {
        client.increment('sent');
        sent += 1;
        await client.flush();
        return calls.length === 2;
      },
      { what: 'the lookup after the TTL' },
    );
    await waitFor(() => lines('ttl', 'c', 'sent').length === sent, { what: `all ${sent} datagrams` });
    assert.equal(client.sendErrors, 0);
    client.close();
  });

  test('a failed lookup is counted and logged once, never thrown, and not retried per datagram', async () => {
    const { lookup, calls } = countedLookup();
    const logger = new TestLogger();
    // .invalid is reserved: the real resolver answers ENOTFOUND.
    const client = new StatsdClient({ host: 'statsd.invalid', port, prefix: 'nx' }, 'c', logger, { lookup });
    for (let i = 0; i < 20; i += 1) {
      client.increment('sent');
      await client.flush();
    }
    await waitFor(() => client.sendErrors === 20, { what: 'the 20 failed datagrams to be counted' });
    assert.deepEqual(calls, ['statsd.invalid/4'], 'a failure is remembered for a while, as a negative cache');
    assert.equal(logger.messages('warn').filter((m) => m.startsWith('statsd send failed')).length, 1);
    client.close();
  });

  test('a send that fails makes the client look the host up again', async () => {
    // Scripted: the first answer is the broadcast address, which a socket without SO_BROADCAST may
    // not send to (a real EACCES from the kernel); a real resolver here cannot change its answer.
    const calls: string[] = [];
    const lookup: LookupAddress = async (host, family) => {
      calls.push(`${host}/${family}`);
      if (calls.length === 1) return '255.255.255.255';
      return (await dns.lookup(host, { family })).address;
    };
    const client = new StatsdClient({ host: 'localhost', port, prefix: 'moved' }, 'c', new TestLogger(), {
      lookup,
      dnsCacheTtlMs: 60_000,
    });
    client.increment('sent');
    await client.flush();
    assert.equal(client.sendErrors, 1);
    await waitFor(
      async () => {
        client.increment('sent');
        await client.flush();
        return lines('moved', 'c', 'sent').length > 0;
      },
      { what: 'a datagram to the address looked up again' },
    );
    assert.equal(calls.length, 2, 'one lookup after the failure, well before the TTL');
    client.close();
  });

  test('a lookup that never answers: flush and close are bounded, the datagram counted', { timeout: 10_000 }, async () => {
    // Scripted: a resolver that never answers (a DNS outage); getaddrinfo would time out only after
    // resolv.conf's timeout × attempts, and no real resolver here can be made to hang.
    const lookup: LookupAddress = () => new Promise<string>(() => undefined);
    const client = new StatsdClient({ host: 'statsd.example', port, prefix: 'hang' }, 'c', new TestLogger(), { lookup });
    client.increment('sent');
    const started = performance.now();
    const flushed = client.flush();
    client.close();
    await flushed;
    assert.ok(performance.now() - started < 5_000, 'flush waited for the lookup at most its bound');
    assert.equal(client.sendErrors, 1);
  });

  test('dnsCacheTtlMs is validated', () => {
    for (const bad of [0, -1, 1.5, Number.NaN, '60000']) {
      assert.throws(
        () =>
          new StatsdClient({ host: 'localhost', port, prefix: 'bad' }, 'c', new TestLogger(), { dnsCacheTtlMs: bad as number }),
        (error: unknown) =>
          error instanceof InvalidOptionError &&
          error.option === 'dnsCacheTtlMs' &&
          Object.is(error.value, bad) &&
          /^an integer from 1 to /.test(error.expected),
      );
    }
  });
});
