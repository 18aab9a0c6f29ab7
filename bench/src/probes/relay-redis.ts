/**
 * Relay to Redis Streams (issue 16; architecture/relay.md "Redis Streams sink"): the server's own
 * XADD rate through ioredis alone (auto-pipelining, as the sink), outbox.relay() through
 * redisStreamSink() draining pre-inserted rows, and commit-to-broker latency at 200 msg/s (a
 * consumer blocked in XREAD). A real redis-server (Debian's, test/support/redis-server.ts) with an
 * append-only file in a temp dir, and an embedded PostgreSQL.
 *
 *   npm run bench:relay-redis -- [rows, default 20000] [rounds, default 3]
 *
 * Prints a markdown table on stdout (progress on stderr).
 */
import { createRequire } from 'node:module';

import { Redis } from 'ioredis';

import { redisStreamSink } from '../../../src/relay/index.js';
import { startRedisServer } from '../../../test/support/redis-server.js';
import { runRelayProbe } from '../relay-probe.js';

const rows = Number(process.argv[2] ?? 20_000);
const rounds = Number(process.argv[3] ?? 3);

// Redis's default durability (everysec), what BENCHMARKS.md's numbers were measured with; the
// tests and the chaos suite run `always` (test/support/redis-server.ts says why).
const server = await startRedisServer({ appendfsync: 'everysec' });
if ('skip' in server) throw new Error(server.skip);
// The client settings the sink uses (auto-pipelining), so (a) and (b) differ only by the relay.
const direct = new Redis(server.url, { enableAutoPipelining: true });
try {
  const version = /redis_version:(\S+)/.exec(await direct.info('server'))?.[1] ?? '?';
  const table = await runRelayProbe(
    {
      name: `Redis Streams (redis-server ${version}, appendonly, appendfsync everysec; ioredis ${(createRequire(import.meta.url)('ioredis/package.json') as { version: string }).version})`,
      sink: (queue) => redisStreamSink({ url: server.url, stream: `probe:${queue}` }),
      publishDirect: async (queue, messages, concurrency) => {
        let next = 0;
        await Promise.all(
          Array.from({ length: concurrency }, async () => {
            for (let m = messages[next++]; m !== undefined; m = messages[next++]) {
              await direct.xadd(
                `probe:${queue}`,
                '*',
                'id',
                m.messageId,
                'payload',
                m.payload,
                'headers',
                JSON.stringify(m.headers),
              );
            }
          }),
        );
      },
      consume: async (queue, onMessage) => {
        const reader = new Redis(server.url);
        await reader.ping();
        let running = true;
        const loop = (async () => {
          // A fresh stream: from its start ('$' would miss an entry added before the first XREAD).
          let last = '0-0';
          while (running) {
            const reply = await reader.xread('COUNT', 1000, 'BLOCK', 200, 'STREAMS', `probe:${queue}`, last);
            for (const [, entries] of reply ?? []) {
              for (const [id, fields] of entries) {
                last = id;
                const headers = JSON.parse(fields[fields.indexOf('headers') + 1] ?? '{}') as Record<string, string>;
                onMessage(headers['correlation-id'] ?? '');
              }
            }
          }
        })();
        return {
          stop: async () => {
            running = false;
            await loop;
            reader.disconnect();
          },
        };
      },
      close: () => Promise.resolve(),
    },
    { rows, rounds, payloadBytes: 256, concurrency: 64, ratePerSecond: 200, latencySeconds: 10 },
  );
  console.log(table);
} finally {
  direct.disconnect();
  await server.close();
}
