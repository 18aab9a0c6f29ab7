/**
 * `txoutbox/relay`: sinks that carry outbox rows to a broker, for `outbox.relay(queues, sink)`.
 * Each sink loads its client library (an optional peer dependency) when it is created, so importing
 * this entry point needs none of them.
 */
export { SinkRefusedError, SinkUnavailableError } from '../errors.js';
export type { RelayMessage, RelaySink, SendContext } from './sink.js';
// NATS JetStream sink
export type { NatsSink, NatsSinkOptions } from './sinks/nats-sink.js';
export { natsSink } from './sinks/nats-sink.js';
// HTTP webhook sink
export { WebhookRefusedError, WebhookUnavailableError } from './sinks/webhook-errors.js';
export type { WebhookSinkOptions } from './sinks/webhook-sink.js';
export { webhookSink } from './sinks/webhook-sink.js';
// RabbitMQ sink
export type { RabbitmqSink, RabbitmqSinkOptions } from './sinks/rabbitmq-sink.js';
export { rabbitmqSink } from './sinks/rabbitmq-sink.js';
// Redis Streams sink
export type { RedisStreamSink, RedisStreamSinkOptions } from './sinks/redis-stream-sink.js';
export { redisStreamSink } from './sinks/redis-stream-sink.js';
