/**
 * nats-server with JetStream as a relay scenario's broker (broker.ts). One stream, CHAOS, captures
 * `chaos.>` in a file store with a 2 min duplicate window: the sink's Nats-Msg-Id makes a resend of
 * a stored message (its ack lost in the kill) a no-op, so nothing may be stored twice.
 */
import { connect, nanos, type NatsConnection, StorageType } from 'nats';

import { startNatsServer } from '../../test/support/nats-server.js';
import { type Arrival, BROKER_STREAM, type ChaosBroker } from './broker.js';

/** Above the relay's lease plus its retry delays over an outage (architecture/relay.md, deduplication). */
const DUPLICATE_WINDOW_MS = 120_000;

async function admin(url: string): Promise<NatsConnection> {
  return await connect({ servers: url, maxReconnectAttempts: 0, timeout: 5_000 });
}

export async function startNatsBroker(): Promise<ChaosBroker> {
  const started = await startNatsServer();
  if ('skip' in started) throw new Error(started.skip);
  const server = started;
  const setup = await admin(server.url);
  try {
    const jsm = await setup.jetstreamManager();
    await jsm.streams.add({
      name: BROKER_STREAM,
      subjects: ['chaos.>'],
      storage: StorageType.File,
      duplicate_window: nanos(DUPLICATE_WINDOW_MS),
    });
  } finally {
    await setup.close();
  }
  return {
    kind: 'nats',
    name: 'nats-server',
    deduplicates: true,
    port: server.port,
    relay: (port = server.port) => ({
      factory: 'natsSink',
      options: { servers: `nats://127.0.0.1:${String(port)}`, subject: 'chaos.{queue}', stream: BROKER_STREAM },
    }),
    get running() {
      return server.running;
    },
    kill: () => server.stop('SIGKILL'),
    restart: () => server.restart(),
    async readBack() {
      // A consumer of the harness's own: an ordered consumer over the whole stream.
      const nc = await admin(server.url);
      try {
        const js = nc.jetstream();
        const total = (await (await nc.jetstreamManager()).streams.info(BROKER_STREAM)).state.messages;
        const arrivals: Arrival[] = [];
        if (total === 0) return arrivals;
        const consumer = await js.consumers.get(BROKER_STREAM);
        const messages = await consumer.consume();
        for await (const m of messages) {
          arrivals.push({
            messageId: m.headers?.get('Nats-Msg-Id') ?? '',
            at: m.info.timestampNanos / 1e6,
            body: new TextDecoder().decode(m.data),
          });
          if (arrivals.length === total) break;
        }
        return arrivals;
      } finally {
        await nc.close();
      }
    },
    close: () => server.close(),
  };
}
