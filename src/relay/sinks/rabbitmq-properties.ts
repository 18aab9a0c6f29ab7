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

function shortString(value: string | undefined): string | undefined {
  if (value === undefined || value === '' || Buffer.byteLength(value) > SHORT_STRING_BYTES) return undefined;
  return value;
}
