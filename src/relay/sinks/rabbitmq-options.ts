import { InvalidOptionError, renderValue, SinkRefusedError } from '../../errors.js';
import { integerOption } from '../../util/integer-option.js';
import { rejectUnknownOptions } from '../../util/known-options.js';
import { redactConnectionString } from '../../util/redact.js';
import { compileDestination, type Destination, type DestinationOf, templateFilledWith } from '../template.js';
import { INTERNAL_EXCHANGE_PREFIX, SHORT_STRING_BYTES } from './rabbitmq-properties.js';

/** Options of `rabbitmqSink()` (architecture/relay.md, "RabbitMQ sink"). */
export interface RabbitmqSinkOptions {
  /**
   * The broker: `amqp://user:password@host:5672/vhost` or `amqps://…` (TLS), with amqplib's query
   * parameters (`?heartbeat=10&frameMax=131072`). The password is redacted wherever the sink shows
   * the URL.
   */
  readonly url: string;
  /**
   * The exchange each row is published to: `''` (the default exchange, which routes a message to
   * the queue named by its routing key), a fixed name (`orders`), a template (`{headers.x-domain}`)
   * or a function of the message (which may return `''` too). A named exchange is checked once per connection: one that does
   * not exist refuses the row (DLQ) instead of closing the channel under every other send.
   * @default '' (the default exchange: routing key = queue name)
   */
  readonly exchange?: Destination;
  /**
   * The routing key of each row: fixed, a template (`orders.{queue}`, `{orderingKey}` for a
   * consistent-hash exchange) or a function of the message. `''` is a routing key too (fixed, or a
   * function's answer).
   * @default '{queue}'
   */
  readonly routingKey?: Destination;
  /**
   * How long one send may take in all — waiting for a connection, for the exchange check, for the
   * socket to drain, for the broker's confirm — before it fails, to be retried. A broker that has
   * confirmed nothing for this long while publishes were outstanding, and has not said it is blocked,
   * is taken for dead: the connection is dropped and dialled again. @default 10000
   */
  readonly confirmTimeoutMs?: number;
  /** How long one dial may take (TCP, TLS, the AMQP handshake, opening the channel). @default 5000 */
  readonly connectTimeoutMs?: number;
  /**
   * The longest pause between two dials after a failure: pauses start at 100 ms and double up to
   * this (±25 % jitter). Sends during a pause fail at once (the relay retries them). @default 5000
   */
  readonly maxReconnectDelayMs?: number;
  /**
   * A payload larger than this is refused (DLQ) without being sent. RabbitMQ closes the channel on a
   * message over its `max_message_size` (16 MiB by default from 4.0, 128 MiB in 3.8–3.13), failing
   * every send in flight with it, and the row is retried for good; set this to the broker's limit
   * when it is not 16 MiB. @default 16777216
   */
  readonly maxMessageBytes?: number;
  /**
   * Further socket options for amqplib's `connect()`: TLS (`ca`, `cert`, `key`, `servername`,
   * `rejectUnauthorized`), `keepAlive`, `noDelay`, `credentials` (EXTERNAL), `clientProperties`
   * (merged over the sink's `connection_name`). The sink owns `timeout` (connectTimeoutMs).
   */
  readonly socketOptions?: Readonly<Record<string, unknown>>;
}

export interface ResolvedRabbitmqOptions {
  readonly url: string;
  /** The URL as shown in messages: password masked. */
  readonly displayUrl: string;
  readonly exchangeOf: DestinationOf;
  readonly routingKeyOf: DestinationOf;
  readonly confirmTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly maxReconnectDelayMs: number;
  readonly maxMessageBytes: number;
  readonly socketOptions: Readonly<Record<string, unknown>>;
}

export const RABBITMQ_SINK = 'rabbitmq';

const KNOWN = [
  'url',
  'exchange',
  'routingKey',
  'confirmTimeoutMs',
  'connectTimeoutMs',
  'maxReconnectDelayMs',
  'maxMessageBytes',
  'socketOptions',
] as const;

/**
 * RabbitMQ 4's default `max_message_size` (3.8–3.13: 128 MiB), and the most it accepts (512 MiB).
 * The lower of the two defaults: on a 3.x broker a larger row is refused with a reason that names
 * this option, while on 4.x the higher one let through rows that close the channel on every retry.
 */
const DEFAULT_MAX_MESSAGE_BYTES = 16_777_216;
const BROKER_MAX_MESSAGE_BYTES = 536_870_912;

export function resolveRabbitmqOptions(raw: RabbitmqSinkOptions): ResolvedRabbitmqOptions {
  // Typed callers cannot get these wrong; JavaScript callers and config files can.
  if (typeof (raw as unknown) !== 'object' || (raw as unknown) === null) {
    throw new InvalidOptionError({
      option: 'rabbitmqSink options',
      value: raw,
      expected: 'an object such as { url: "amqp://user:password@127.0.0.1:5672" }',
    });
  }
  rejectUnknownOptions(raw, 'rabbitmqSink()', KNOWN);
  const url = raw.url as unknown;
  if (typeof url !== 'string' || !isAmqpUrl(url)) {
    throw new InvalidOptionError({
      option: 'url',
      value: url,
      expected: 'an AMQP URL such as "amqp://user:password@127.0.0.1:5672/vhost" (amqp: or amqps:)',
      fix: 'Pass the broker URL.',
      // It may hold a password: never echoed.
      redact: true,
    });
  }
  const socketOptions: unknown = raw.socketOptions === undefined ? {} : raw.socketOptions;
  if (typeof socketOptions !== 'object' || socketOptions === null || Array.isArray(socketOptions)) {
    throw new InvalidOptionError({
      option: 'socketOptions',
      value: socketOptions,
      expected: 'an object of amqplib socket options (ca, cert, key, servername, keepAlive, clientProperties, ...)',
      redact: true,
    });
  }
  if (Object.hasOwn(socketOptions, 'timeout')) {
    throw new InvalidOptionError({
      option: 'socketOptions.timeout',
      value: (socketOptions as { timeout: unknown }).timeout,
      expected: 'no timeout: the sink sets it',
      fix: 'Remove socketOptions.timeout; use connectTimeoutMs.',
    });
  }
  return {
    url,
    displayUrl: redactConnectionString(url),
    exchangeOf: exchangeOf(raw.exchange),
    routingKeyOf: routingKeyOf(raw.routingKey),
    confirmTimeoutMs: integerOption('confirmTimeoutMs', raw.confirmTimeoutMs, 1, 600_000, 10_000),
    connectTimeoutMs: integerOption('connectTimeoutMs', raw.connectTimeoutMs, 1, 600_000, 5_000),
    maxReconnectDelayMs: integerOption('maxReconnectDelayMs', raw.maxReconnectDelayMs, 100, 600_000, 5_000),
    maxMessageBytes: integerOption(
      'maxMessageBytes',
      raw.maxMessageBytes,
      1,
      BROKER_MAX_MESSAGE_BYTES,
      DEFAULT_MAX_MESSAGE_BYTES,
    ),
    socketOptions: socketOptions as Readonly<Record<string, unknown>>,
  };
}

/**
 * The exchange option compiled. The default exchange is the one name that is empty, and
 * compileDestination refuses "" (no other broker routes to it): see emptyAllowed.
 */
function exchangeOf(exchange: Destination | undefined): DestinationOf {
  if (typeof exchange === 'string' && exchange !== '') {
    const compiled = compileDestination(RABBITMQ_SINK, 'exchange', exchange);
    refuseUnpublishableExchange(exchange);
    return compiled;
  }
  return emptyAllowed('exchange', exchange ?? '');
}

/**
 * The routing key option compiled: `''` is a routing key too (a fanout or headers exchange ignores
 * it; a direct one routes it to queues bound with `''`), which compileDestination refused, and a
 * function returning it sent its row to the DLQ (review). See emptyAllowed.
 */
function routingKeyOf(routingKey: Destination | undefined): DestinationOf {
  if (typeof routingKey === 'string' && routingKey !== '') return compileDestination(RABBITMQ_SINK, 'routingKey', routingKey);
  return emptyAllowed('routingKey', routingKey ?? '{queue}');
}

/**
 * An AMQP name option whose empty value is a name: `''` given is taken as the fixed value it is,
 * and a function may return it (`(m) => (m.queue === 'audit' ? 'audit' : '')`). A template that
 * fills in "" (an empty header) is still refused by compileDestination: that is a row without its
 * value.
 */
function emptyAllowed(option: string, destination: Destination): DestinationOf {
  if (destination === '') return () => '';
  if (typeof destination !== 'function') return compileDestination(RABBITMQ_SINK, option, destination);
  return (message) => {
    const value: unknown = destination(message);
    if (typeof value !== 'string')
      throw new SinkRefusedError(
        RABBITMQ_SINK,
        `${option} returned ${renderValue(value)} for message ${message.messageId}, not a string`,
      );
    return value;
  };
}

/**
 * A fixed exchange, or a template's own text, that no row could be published to: over 255 bytes
 * with its placeholders empty, or one of RabbitMQ's internal exchanges (rabbitmq-properties.ts,
 * destinationProblem, which judges each row's).
 */
function refuseUnpublishableExchange(exchange: string): void {
  const shortest = templateFilledWith('exchange', exchange, '');
  const problem =
    Buffer.byteLength(shortest) > SHORT_STRING_BYTES
      ? `an exchange name of at most ${SHORT_STRING_BYTES} bytes (AMQP's limit)`
      : templateFilledWith('exchange', exchange, 'x').startsWith(INTERNAL_EXCHANGE_PREFIX)
        ? `an exchange RabbitMQ lets clients publish to (not ${INTERNAL_EXCHANGE_PREFIX}*, which are internal)`
        : undefined;
  if (problem === undefined) return;
  throw new InvalidOptionError({
    option: 'exchange',
    value: exchange,
    expected: problem,
    fix: 'Name the exchange the rows go to, declared by your topology.',
  });
}

function isAmqpUrl(url: string): boolean {
  try {
    const parsed = new URL(url);
    return (parsed.protocol === 'amqp:' || parsed.protocol === 'amqps:') && parsed.hostname !== '';
  } catch {
    return false;
  }
}
