import type { Options } from 'amqplib';

import type { RelayMessage } from '../sink.js';

/** AMQP 0-9-1 short strings (the basic properties below, exchange names, routing keys) hold at most 255 bytes. */
export const SHORT_STRING_BYTES = 255;

/**
 * RabbitMQ's own internal exchanges (`amq.rabbitmq.trace`, `amq.rabbitmq.log`): a publish to one is
 * answered 403, which closes the channel and with it the sink's connection, failing every send in
 * flight. (`amq.direct`, `amq.topic`, … are ordinary exchanges.)
 */
export const INTERNAL_EXCHANGE_PREFIX = 'amq.rabbitmq.';

/**
 * Why a row's exchange or routing key can never be published, or undefined. Judged before the
 * broker: an exchange name over 255 bytes failed amqplib's encoding of the exchange check, which
 * was retried forever and left a channel open each time; an internal exchange closed the
 * connection under every other send, once per retry.
 */
export function destinationProblem(exchange: string, routingKey: string): string | undefined {
  const exchangeBytes = Buffer.byteLength(exchange);
  if (exchangeBytes > SHORT_STRING_BYTES) return `exchange name is ${exchangeBytes} bytes, over AMQP's ${SHORT_STRING_BYTES}`;
  if (exchange.startsWith(INTERNAL_EXCHANGE_PREFIX))
    return `exchange ${JSON.stringify(exchange)} is internal to RabbitMQ (${INTERNAL_EXCHANGE_PREFIX}*): a publish to it is refused (403) and closes the connection`;
  const keyBytes = Buffer.byteLength(routingKey);
  if (keyBytes > SHORT_STRING_BYTES) return `routing key is ${keyBytes} bytes, over AMQP's ${SHORT_STRING_BYTES}`;
  return undefined;
}

/**
 * What a row becomes on the wire (architecture/relay.md, "RabbitMQ sink"): the stored payload as
 * the body, every row header as an AMQP header, and the basic properties a RabbitMQ consumer
 * reads first.
 *
 * - `messageId`: the row's stable id, the same on every redelivery, so a consumer can deduplicate
 *   (RabbitMQ itself cannot), and what a basic.return is matched back to its send by.
 * - `correlationId`, `contentType`, `contentEncoding`: from the row, when they fit a short string;
 *   the headers always carry them whole (`correlation-id`, `content-type`), so a long one costs the
 *   property, never the message.
 * - `timestamp`: the commit time in whole seconds (AMQP's unit).
 * - `persistent` (delivery mode 2): a durable queue writes it to disk before the confirm.
 * - `mandatory`: an unroutable message comes back (basic.return) instead of being dropped.
 *
 * W3C `traceparent`/`tracestate` are row headers, so they travel as AMQP headers, where
 * OpenTelemetry's amqplib instrumentation extracts the context on the consumer's side.
 */
export function publishOptions(message: RelayMessage): Options.Publish {
  const headers: Record<string, string> = { ...message.headers };
  headers['correlation-id'] ??= message.correlationId;
  const options: Options.Publish = {
    mandatory: true,
    persistent: true,
    messageId: message.messageId,
    timestamp: Math.floor(message.createdAt.getTime() / 1000),
    headers,
  };
  const correlationId = shortString(message.correlationId);
  if (correlationId !== undefined) options.correlationId = correlationId;
  const contentType = shortString(message.headers['content-type']);
  if (contentType !== undefined) options.contentType = contentType;
  const contentEncoding = shortString(message.headers['content-encoding']);
  if (contentEncoding !== undefined) options.contentEncoding = contentEncoding;
  return options;
}

/**
 * The most bytes a message's headers may take as an AMQP field table: amqplib encodes the table
 * (alone: the other properties are sized apart) into one 64 KiB scratch buffer. From 2.3.1 a table
 * that overflows it throws (refused by the session), but earlier versions, still in the peer range,
 * cut the string short without a word; RabbitMQ then closes the connection (541) after publish()
 * returned, and the row was retried for good, taking every send in flight with it each time.
 * Counted here, so every version refuses it alike, before the broker.
 */
export const MAX_HEADER_TABLE_BYTES = 65_536;

/**
 * The bytes of `headers` as an AMQP field table: the table's length, then per entry the key (a
 * short string: length byte and bytes), the type byte and the value. A string value (every header
 * txoutbox writes) is a long string: its length and bytes, exact. A row written by hand may hold
 * other JSON there: see valueBytes.
 */
export function headerTableBytes(headers: Readonly<Record<string, unknown>>): number {
  let bytes = 4;
  for (const key in headers) bytes += 2 + Buffer.byteLength(key) + valueBytes(headers[key]);
  return bytes;
}

/**
 * A string value exactly; any other value (a row written by hand: a number, null, an array, an
 * object) by an upper bound on its encoding: three times its JSON bytes and a type. Each element
 * amqplib encodes takes at most three times the JSON it comes from (a float in an array: 9 bytes
 * for `0.5,`; a string: 5 + n for n + 3; an integer key or a boolean less), so no table over the
 * buffer is let through.
 */
function valueBytes(value: unknown): number {
  if (typeof value === 'string') return 4 + Buffer.byteLength(value);
  // JSON.stringify gives undefined (though typed string) for undefined and functions.
  const json = JSON.stringify(value) as unknown;
  return 9 + (typeof json === 'string' ? 3 * Buffer.byteLength(json) : 0);
}

/**
 * The table's bytes when they are over MAX_HEADER_TABLE_BYTES, else undefined. The usual table is
 * not measured: a UTF-16 unit is at most 3 bytes of UTF-8, so its lengths bound it well under.
 */
export function oversizedHeaderTable(headers: Readonly<Record<string, unknown>>): number | undefined {
  let bound = 4;
  for (const key in headers) {
    const value = headers[key];
    if (typeof value !== 'string') return overLimit(headerTableBytes(headers));
    bound += 6 + 3 * (key.length + value.length);
  }
  return bound <= MAX_HEADER_TABLE_BYTES ? undefined : overLimit(headerTableBytes(headers));
}

/**
 * RabbitMQ's sender-selected distribution headers: a list of extra routing keys (`BCC` stripped
 * before delivery). Any other value makes the broker close the channel (406 PRECONDITION_FAILED,
 * unacceptable_type_in_header) after publish() returned: the row failed as unavailable and was
 * retried for good, and each attempt failed every send in flight on the channel with it.
 */
const DISTRIBUTION_HEADERS = ['CC', 'BCC'] as const;

/** Why a row's CC/BCC header would close the channel, or undefined when it has none or a list of strings. */
export function distributionHeaderProblem(headers: Readonly<Record<string, unknown>>): string | undefined {
  for (const header of DISTRIBUTION_HEADERS) {
    if (!Object.hasOwn(headers, header)) continue;
    const value = headers[header];
    if (Array.isArray(value) && value.every((key) => typeof key === 'string')) continue;
    // JSON.stringify gives undefined (though typed string) for undefined and functions.
    const shown = (JSON.stringify(value) as string | undefined) ?? typeof value;
    return `header ${header} is RabbitMQ's sender-selected distribution, which takes a list of strings (routing keys), not ${shown.length > 100 ? `${shown.slice(0, 100)}…` : shown}; RabbitMQ would close the channel (406)`;
  }
  return undefined;
}

function overLimit(bytes: number): number | undefined {
  return bytes > MAX_HEADER_TABLE_BYTES ? bytes : undefined;
}

function shortString(value: string | undefined): string | undefined {
  if (value === undefined || value === '' || Buffer.byteLength(value) > SHORT_STRING_BYTES) return undefined;
  return value;
}
