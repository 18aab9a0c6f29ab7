import type { RelaySink } from '../../relay/sink.js';
import { resolveNatsOptions } from '../../relay/sinks/nats-options.js';
import { natsSink, type NatsSinkOptions } from '../../relay/sinks/nats-sink.js';
import { resolveRabbitmqOptions } from '../../relay/sinks/rabbitmq-options.js';
import { rabbitmqSink, type RabbitmqSinkOptions } from '../../relay/sinks/rabbitmq-sink.js';
import { resolveRedisStreamOptions } from '../../relay/sinks/redis-stream-options.js';
import { redisStreamSink, type RedisStreamSinkOptions } from '../../relay/sinks/redis-stream-sink.js';
import { resolveWebhookOptions } from '../../relay/sinks/webhook-options.js';
import { webhookSink, type WebhookSinkOptions } from '../../relay/sinks/webhook-sink.js';
import type { Section } from './config-issues.js';

/**
 * The sinks a `relays:` entry can name as `sink.type` (architecture/runner.md, Relays): the config
 * checks a sink's options with the factory's own resolver in the parent (which never connects),
 * and the child creates the sink with the factory itself. A type missing here is a config error
 * listing the ones present.
 */
export interface RelaySinkType {
  /** The keys a `sink:` section of this type may hold besides `type`: the factory's options. */
  readonly keys: readonly string[];
  /** The client library the sink loads (an optional peer), checked to resolve when the config loads. */
  readonly peer: string | undefined;
  /** The factory's own validation: throws its InvalidOptionError; never connects. */
  readonly validate: (options: Section) => void;
  /**
   * Valid values for a key whose value failed, so the keys checked after it (or against it) are
   * still judged: the resolver stops at its first error (library-options.ts, OptionPaths).
   */
  readonly standIns: Section;
  readonly create: (options: Section) => RelaySink;
}

/**
 * Every option of a factory, as a Record over its options interface: the compiler fails here when
 * a sink gains an option the config does not know.
 */
type OptionKeys<Options> = Record<keyof Options, true>;

function sinkType<Options>(
  keys: OptionKeys<Options>,
  peer: string | undefined,
  standIns: Partial<Options>,
  resolve: (options: Options) => unknown,
  create: (options: Options) => RelaySink,
): RelaySinkType {
  return {
    keys: Object.keys(keys),
    peer,
    standIns,
    validate: (options) => {
      resolve(options as Options);
    },
    create: (options) => create(options as Options),
  };
}

const WEBHOOK: OptionKeys<WebhookSinkOptions> = {
  url: true,
  method: true,
  headers: true,
  secret: true,
  signatureHeader: true,
  timeoutMs: true,
  terminalStatuses: true,
  maxSockets: true,
  healthUrl: true,
};

const NATS: OptionKeys<NatsSinkOptions> = {
  servers: true,
  subject: true,
  stream: true,
  confirmTimeoutMs: true,
  connectTimeoutMs: true,
  reconnectWaitMs: true,
  connectOptions: true,
};

const RABBITMQ: OptionKeys<RabbitmqSinkOptions> = {
  url: true,
  exchange: true,
  routingKey: true,
  confirmTimeoutMs: true,
  connectTimeoutMs: true,
  maxReconnectDelayMs: true,
  maxMessageBytes: true,
  socketOptions: true,
};

const REDIS: OptionKeys<RedisStreamSinkOptions> = {
  url: true,
  stream: true,
  maxLen: true,
  approximate: true,
  confirmTimeoutMs: true,
  connectTimeoutMs: true,
  reconnectWaitMs: true,
  redisOptions: true,
};

export const RELAY_SINK_TYPES: Readonly<Record<string, RelaySinkType>> = {
  webhook: sinkType(WEBHOOK, undefined, { url: 'http://localhost/', secret: 'stand-in' }, resolveWebhookOptions, webhookSink),
  nats: sinkType(NATS, 'nats', { servers: 'nats://localhost' }, resolveNatsOptions, natsSink),
  rabbitmq: sinkType(RABBITMQ, 'amqplib', { url: 'amqp://localhost' }, resolveRabbitmqOptions, rabbitmqSink),
  redis: sinkType(REDIS, 'ioredis', { url: 'redis://localhost', maxLen: 1_000 }, resolveRedisStreamOptions, redisStreamSink),
};

export const RELAY_SINK_TYPE_NAMES = Object.keys(RELAY_SINK_TYPES);

/** The registered type of this name (own keys only: `constructor` is not a sink). */
export function relaySinkType(type: string): RelaySinkType | undefined {
  return Object.hasOwn(RELAY_SINK_TYPES, type) ? RELAY_SINK_TYPES[type] : undefined;
}
