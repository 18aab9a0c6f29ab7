/**
 * Relay to NATS JetStream (issue 16; architecture/relay.md "NATS JetStream sink"): the server's own
 * publish rate with PubAcks through the nats client alone, outbox.relay() through natsSink() draining
 * pre-inserted rows, and commit-to-broker latency at 200 msg/s. A real nats-server (Debian's,
 * test/support/nats-server.ts) with a file store in a temp dir, and an embedded PostgreSQL.
 *
 *   npm run bench:relay-nats -- [rows, default 20000] [rounds, default 3]
 *
 * Prints a markdown table on stdout (progress on stderr).
 */
import { createRequire } from 'node:module';

import { connect, headers, type JetStreamClient, nanos, type NatsConnection, StorageType } from 'nats';

import { natsSink } from '../../../src/relay/index.js';
import { startNatsServer } from '../../../test/support/nats-server.js';
import { runRelayProbe } from '../relay-probe.js';

const rows = Number(process.argv[2] ?? 20_000);
const rounds = Number(process.argv[3] ?? 3);

const server = await startNatsServer();
if ('skip' in server) throw new Error(server.skip);
let admin: NatsConnection | undefined;
try {
  // The client settings the sink uses (noAsyncTraces), so (a) and (b) differ only by the relay.
  admin = await connect({ servers: server.url, noAsyncTraces: true });
  const jsm = await admin.jetstreamManager();
  await jsm.streams.add({ name: 'PROBE', subjects: ['probe.>'], storage: StorageType.File, duplicate_window: nanos(120_000) });
  const js: JetStreamClient = admin.jetstream();
  const version = admin.info?.version ?? '?';
  const nc = admin;
  const table = await runRelayProbe(
    {
      name: `NATS JetStream (nats-server ${version}, file store; nats ${(createRequire(import.meta.url)('nats/package.json') as { version: string }).version})`,
      sink: (queue) => natsSink({ servers: server.url, subject: `probe.${queue}` }),
      publishDirect: async (queue, messages, concurrency) => {
        let next = 0;
        await Promise.all(
          Array.from({ length: concurrency }, async () => {
            for (let m = messages[next++]; m !== undefined; m = messages[next++]) {
              const h = headers();
              for (const [key, value] of Object.entries(m.headers)) h.set(key, value);
              await js.publish(`probe.${queue}`, m.payload, { msgID: m.messageId, headers: h });
            }
          }),
        );
      },
      consume: async (queue, onMessage) => {
        const subscription = nc.subscribe(`probe.${queue}`, {
          callback: (error, message) => {
            if (error === null) onMessage(message.headers?.get('correlation-id') ?? '');
          },
        });
        await nc.flush();
        return { stop: async () => subscription.drain() };
      },
      close: () => Promise.resolve(),
    },
    { rows, rounds, payloadBytes: 256, concurrency: 64, ratePerSecond: 200, latencySeconds: 10 },
  );
  console.log(table);
} finally {
  await admin?.close();
  await server.close();
}
