/**
 * Relay to RabbitMQ (issue 16; architecture/relay.md "RabbitMQ sink"): the broker's own publish rate
 * with publisher confirms through amqplib alone, outbox.relay() through rabbitmqSink() draining
 * pre-inserted rows, and commit-to-broker latency at 200 msg/s (bench/src/relay-probe.ts). A real
 * RabbitMQ (Debian's, test/support/rabbitmq-server.ts: a private node on free ports), durable queues,
 * persistent messages, and an embedded PostgreSQL.
 *
 *   npm run bench:relay-rabbitmq -- [rows, default 20000] [rounds, default 3]
 *
 * Prints a markdown table on stdout (progress on stderr).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

import amqplib from 'amqplib';

import { rabbitmqSink } from '../../../src/relay/index.js';
import type { RelaySink } from '../../../src/relay/sink.js';
import { publishOptions } from '../../../src/relay/sinks/rabbitmq-properties.js';
import { startRabbitmq } from '../../../test/support/rabbitmq-server.js';
import { runRelayProbe } from '../relay-probe.js';

const rows = Number(process.argv[2] ?? 20_000);
const rounds = Number(process.argv[3] ?? 3);

const started = await startRabbitmq();
if ('skip' in started) throw new Error(started.skip);
const broker = started;
const admin = await amqplib.connect(broker.url);
try {
  const declarations = await admin.createChannel();
  const declared = new Map<string, Promise<unknown>>();
  /** Each probe queue is a durable broker queue of the same name, reached through the default exchange. */
  const declare = (queue: string): Promise<unknown> => {
    let done = declared.get(queue);
    if (done === undefined) declared.set(queue, (done = declarations.assertQueue(queue, { durable: true })));
    return done;
  };
  const publisher = await amqplib.connect(broker.url);
  const confirms = await publisher.createConfirmChannel();
  // amqplib's exports map does not list package.json: read it next to the module.
  const amqplibMain = createRequire(import.meta.url).resolve('amqplib');
  const amqplibVersion = (JSON.parse(readFileSync(join(dirname(amqplibMain), 'package.json'), 'utf8')) as { version: string })
    .version;

  const table = await runRelayProbe(
    {
      name: `RabbitMQ ${broker.version} (durable queue, persistent, publisher confirms; amqplib ${amqplibVersion})`,
      sink: (queue): RelaySink => {
        const sink = rabbitmqSink({ url: broker.url });
        const ready = declare(queue);
        // The queue must exist before the first send (or the message is refused as unroutable).
        return {
          name: sink.name,
          send: async (message, context) => {
            await ready;
            await sink.send(message, context);
          },
          check: () => sink.check(),
          close: () => sink.close(),
        };
      },
      publishDirect: async (queue, messages, concurrency) => {
        await declare(queue);
        let next = 0;
        await Promise.all(
          Array.from({ length: concurrency }, async () => {
            for (let m = messages[next++]; m !== undefined; m = messages[next++]) {
              const message = m;
              // The very properties the sink sends (mandatory, persistent, ids, headers): (a) and (b)
              // put the same frames on the wire.
              await new Promise<void>((resolve, reject) => {
                confirms.publish('', queue, message.payload, publishOptions(message), (error: unknown) => {
                  if (error === null || error === undefined) resolve();
                  else reject(error instanceof Error ? error : new Error('the broker nacked the message'));
                });
              });
            }
          }),
        );
      },
      consume: async (queue, onMessage) => {
        await declare(queue);
        const channel = await admin.createChannel();
        await channel.consume(
          queue,
          (message) => {
            if (message !== null) onMessage(String(message.properties.correlationId ?? ''));
          },
          { noAck: true },
        );
        return { stop: () => channel.close() };
      },
      close: async () => {
        await publisher.close();
      },
    },
    { rows, rounds, payloadBytes: 256, concurrency: 64, ratePerSecond: 200, latencySeconds: 10 },
  );
  console.log(table);
} finally {
  await admin.close().catch(() => undefined);
  await broker.close();
}
