/**
 * redis-server as a relay scenario's broker (broker.ts). The relay appends to one stream per queue
 * (`chaos:<queue>`); its server keeps an append-only file with `appendfsync always`, so a SIGKILL
 * loses no entry Redis acknowledged (with Redis's default, everysec, it can: redis-server.ts). Redis cannot deduplicate: an XADD applied whose
 * reply was lost in the kill is appended again by the retry, and the accounting counts it.
 */
import { Redis } from 'ioredis';

import { startRedisServer } from '../../test/support/redis-server.js';
import type { Arrival, ChaosBroker } from './broker.js';

const STREAM = 'chaos:{queue}';
/** XRANGE page size: the read-back's memory per round trip. */
const PAGE = 1_000;

function field(fields: readonly string[], name: string): string {
  const at = fields.indexOf(name);
  return at < 0 || at % 2 === 1 ? '' : (fields[at + 1] ?? '');
}

export async function startRedisBroker(): Promise<ChaosBroker> {
  const started = await startRedisServer();
  if ('skip' in started) throw new Error(started.skip);
  const server = started;
  return {
    kind: 'redis',
    name: 'redis-server',
    deduplicates: false,
    port: server.port,
    relay: (port = server.port) => ({
      factory: 'redisStreamSink',
      options: { url: `redis://127.0.0.1:${String(port)}`, stream: STREAM },
    }),
    get running() {
      return server.running;
    },
    kill: () => server.stop('SIGKILL'),
    restart: () => server.restart(),
    async readBack() {
      // A consumer of the harness's own, reading every stream the relay wrote from its start.
      const client = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false });
      client.on('error', () => undefined);
      try {
        await client.connect();
        const arrivals: Arrival[] = [];
        for (const stream of await client.keys('chaos:*')) {
          let start = '-';
          for (;;) {
            const page = await client.xrange(stream, start, '+', 'COUNT', PAGE);
            for (const [entryId, fields] of page) {
              arrivals.push({
                messageId: field(fields, 'id'),
                at: Number(entryId.split('-')[0]),
                body: field(fields, 'payload'),
              });
            }
            const last = page.at(-1);
            if (last === undefined || page.length < PAGE) break;
            start = `(${last[0]}`;
          }
        }
        return arrivals;
      } finally {
        client.disconnect();
      }
    },
    close: () => server.close(),
  };
}
