import { errorMessage, SinkRefusedError } from '../../errors.js';
import { maskSecrets } from '../../util/redact.js';
import type { RelayMessage, SendContext } from '../sink.js';
import { type AmqplibModule, RabbitmqConnector } from './rabbitmq-connector.js';
import { RABBITMQ_SINK, type ResolvedRabbitmqOptions } from './rabbitmq-options.js';
import {
  destinationProblem,
  distributionHeaderProblem,
  MAX_HEADER_TABLE_BYTES,
  oversizedHeaderTable,
  publishOptions,
} from './rabbitmq-properties.js';
import { SendBound } from './rabbitmq-send-bound.js';
import type { RabbitmqSink } from './rabbitmq-sink-type.js';

/** rabbitmqSink() with the client loader as a parameter (tests point it at a module that does not exist). */
export function createRabbitmqSink(resolved: ResolvedRabbitmqOptions, loadClient: () => Promise<AmqplibModule>): RabbitmqSink {
  const describe = describer(resolved.url, resolved.displayUrl);
  const connector = new RabbitmqConnector(
    resolved,
    async () => {
      const module = await loadClient();
      // The CommonJS client seen through import(): its exports may sit on `default` only.
      return typeof module.connect === 'function' ? module : (module as unknown as { default: AmqplibModule }).default;
    },
    describe,
  );

  const stats = { confirmed: 0, refused: 0, drainWaits: 0 };

  async function send(message: RelayMessage, context: SendContext): Promise<void> {
    try {
      await publish(message, context);
      stats.confirmed += 1;
    } catch (error) {
      if (error instanceof SinkRefusedError) stats.refused += 1;
      throw error;
    }
  }

  async function publish(message: RelayMessage, context: SendContext): Promise<void> {
    context.signal.throwIfAborted();
    // Everything that can refuse the row without the broker comes first: no connection needed.
    const exchange = resolved.exchangeOf(message);
    const routingKey = resolved.routingKeyOf(message);
    const unpublishable = destinationProblem(exchange, routingKey);
    if (unpublishable !== undefined) throw new SinkRefusedError(RABBITMQ_SINK, `message ${message.messageId}: ${unpublishable}`);
    if (message.payload.length > resolved.maxMessageBytes) {
      throw new SinkRefusedError(
        RABBITMQ_SINK,
        `the payload of message ${message.messageId} is ${message.payload.length} bytes, over maxMessageBytes (${resolved.maxMessageBytes})`,
      );
    }
    const options = publishOptions(message);
    const tableBytes = oversizedHeaderTable(options.headers as Record<string, string>);
    if (tableBytes !== undefined) {
      throw new SinkRefusedError(
        RABBITMQ_SINK,
        `the headers of message ${message.messageId} cannot be encoded as AMQP: ${tableBytes} bytes as a field table, over the ${MAX_HEADER_TABLE_BYTES} amqplib can encode`,
      );
    }
    const distribution = distributionHeaderProblem(message.headers);
    if (distribution !== undefined) throw new SinkRefusedError(RABBITMQ_SINK, `message ${message.messageId}: ${distribution}`);
    let confirming: { confirmOverdue(stalledMs: number): void } | undefined;
    const bound = new SendBound(context.signal, resolved.confirmTimeoutMs, (phase) => {
      // Half the bound, not all of it: this send was published after its bound started, so when it
      // was the only one outstanding the broker's silence is a little shorter than the bound, and a
      // full-bound rule would keep a dead connection (or drop it only by timer jitter).
      if (phase === 'the confirm') confirming?.confirmOverdue(resolved.confirmTimeoutMs / 2);
    });
    try {
      // The common case, an open connection and a known exchange, waits for nothing but the confirm
      // (each bound.wait is a race and an abort watch: measurable at thousands of sends a second).
      const session = connector.current ?? (await bound.wait('a connection', connector.session()));
      if (!session.knowsExchange(exchange)) await bound.wait('the exchange check', session.ensureExchange(exchange));
      if (!session.writable) {
        stats.drainWaits += 1;
        await bound.wait('the socket to drain', session.drained());
      }
      bound.throwIfOver();
      confirming = session;
      await bound.wait('the confirm', session.publish(exchange, routingKey, message.payload, options));
    } finally {
      bound.end();
    }
  }

  async function check(): Promise<boolean> {
    try {
      // A round trip unless a confirm came lately, bounded by connectTimeoutMs like the dial below.
      const current = connector.current;
      if (current !== undefined) return await current.answers(resolved.connectTimeoutMs);
      // In a backoff pause the last dial failed moments ago: report that, without dialling again.
      if (connector.pausing) return false;
      // Bounded by connectTimeoutMs (the dial's own bound).
      const session = await connector.session();
      return session.unusable === undefined;
    } catch {
      return false;
    }
  }

  return {
    name: RABBITMQ_SINK,
    send,
    check,
    close: () => connector.close(),
    get stats() {
      return { ...stats, connections: connector.opened };
    },
  };
}

/**
 * Error text as the sink shows it: amqplib's messages name host and port, not credentials, but a
 * socket error could echo what it was given, so the URL and its password never pass through
 * (maskSecrets: a password under 4 characters only where it stands alone).
 */
function describer(url: string, displayUrl: string): (error: unknown) => string {
  const secrets: string[] = [];
  try {
    const password = new URL(url).password;
    secrets.push(password, decodeURIComponent(password));
  } catch {
    // The URL was validated at creation; nothing to mask if it no longer parses.
  }
  return (error) => {
    const text = errorMessage(error);
    return maskSecrets(text.split(url).join(displayUrl), secrets);
  };
}
