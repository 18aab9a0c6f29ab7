import { loadPeer } from './load-peer.js';
import type { AmqplibModule } from './rabbitmq-connector.js';
import { type RabbitmqSinkOptions, resolveRabbitmqOptions } from './rabbitmq-options.js';
// The sink itself lives apart from this entry: its declarations name amqplib's types, and a project
// that imports txoutbox/relay without amqplib installed must still type-check (the pack smoke).
import { createRabbitmqSink } from './rabbitmq-sink-core.js';
import type { RabbitmqSink } from './rabbitmq-sink-type.js';

export type { RabbitmqSinkOptions } from './rabbitmq-options.js';
export type { RabbitmqSink } from './rabbitmq-sink-type.js';

/**
 * Relays rows to RabbitMQ (architecture/relay.md, "RabbitMQ sink") over one AMQP connection with a
 * confirm channel: each send is one `basic.publish` (mandatory, persistent) resolved by the broker's
 * publisher confirm. Concurrent sends pipeline on the channel and the broker acks them in batches
 * (`multiple`), so there is no confirm wait per message.
 *
 * Refused for good (SinkRefusedError → DLQ): an unroutable message (basic.return, e.g. 312
 * NO_ROUTE), a missing exchange (404), a payload over maxMessageBytes, a message AMQP cannot encode.
 * Everything else (not connected, a nack, a closed channel, no confirm in time) is retryable; the
 * connection is dialled again by a later send, with backoff.
 *
 * amqplib is an optional peer dependency, imported on the first dial.
 */
export function rabbitmqSink(options: RabbitmqSinkOptions): RabbitmqSink {
  const resolved = resolveRabbitmqOptions(options);
  return createRabbitmqSink(resolved, () => loadPeer<AmqplibModule>('amqplib', 'rabbitmqSink()'));
}
