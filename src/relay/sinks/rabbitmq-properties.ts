import type { Options } from 'amqplib';

import type { RelayMessage } from '../sink.js';

/** AMQP 0-9-1 short strings (the basic properties below) hold at most 255 bytes. */
const SHORT_STRING_BYTES = 255;

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
 * The most bytes a message's headers may take as an AMQP field table. amqplib encodes a message's
 * properties in one 64 KiB scratch buffer: from 2.3.1 a table that overflows it throws (refused by
 * the session), but earlier versions, still in the peer range, cut the string short without a word;
 * RabbitMQ then closes the connection (541) after publish() returned, and the row was retried for
 * good, taking every send in flight with it each time. Counted here, so every version refuses it
 * alike, before the broker. 1 KiB of the buffer is left to the other properties.
 */
export const MAX_HEADER_TABLE_BYTES = 65_536 - 1_024;

/**
 * The bytes of `headers` as an AMQP field table of long strings: the table's length, then per entry
 * the key (a short string: length byte and bytes), the type byte, the value's length and bytes.
 */
export function headerTableBytes(headers: Readonly<Record<string, string>>): number {
  let bytes = 4;
  for (const key in headers) bytes += 6 + Buffer.byteLength(key) + Buffer.byteLength(headers[key] as string);
  return bytes;
}

/**
 * The table's bytes when they are over MAX_HEADER_TABLE_BYTES, else undefined. The usual table is
 * not measured: a UTF-16 unit is at most 3 bytes of UTF-8, so its lengths bound it well under.
 */
export function oversizedHeaderTable(headers: Readonly<Record<string, string>>): number | undefined {
  let bound = 4;
  for (const key in headers) bound += 6 + 3 * (key.length + (headers[key] as string).length);
  if (bound <= MAX_HEADER_TABLE_BYTES) return undefined;
  const bytes = headerTableBytes(headers);
  return bytes > MAX_HEADER_TABLE_BYTES ? bytes : undefined;
}

function shortString(value: string | undefined): string | undefined {
  if (value === undefined || value === '' || Buffer.byteLength(value) > SHORT_STRING_BYTES) return undefined;
  return value;
}
