/**
 * Messages for the sink tests and a driver that sends them the way the relay will: each ordering
 * key's messages one at a time, in order, up to `concurrency` sends in flight.
 */
import { randomBytes } from 'node:crypto';

import { SinkRefusedError } from '../../src/errors.js';
import type { RelayMessage, RelaySink } from '../../src/relay/sink.js';

/**
 * `count` messages over `keys` ordering keys (message i has key i % keys), with binary payloads of
 * 0..maxBytes random bytes (not UTF-8: the bytes must arrive as they are), the headers a traced
 * publisher stores, and a user header.
 */
export function relayMessages(
  count: number,
  options: { queue?: string; keys?: number; maxBytes?: number; firstId?: number } = {},
): RelayMessage[] {
  const queue = options.queue ?? 'orders';
  const keys = options.keys ?? 100;
  const maxBytes = options.maxBytes ?? 2048;
  const firstId = options.firstId ?? 1;
  return Array.from({ length: count }, (_, i) => {
    const id = String(firstId + i);
    const correlationId = `corr-${id}`;
    return {
      messageId: `txoutbox.outbox:${id}`,
      id,
      queue,
      orderingKey: `key-${i % keys}`,
      payload: randomBytes(Math.floor(Math.random() * (maxBytes + 1))),
      headers: {
        'content-type': 'application/octet-stream',
        'correlation-id': correlationId,
        traceparent: `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`,
        tracestate: `txoutbox=${id},vendor=abc`,
        'x-tenant': `tenant-${i % 7}`,
      },
      correlationId,
      createdAt: new Date(),
      deliveriesCount: 1,
    };
  });
}

/** One message with some fields changed (`headers` replaces all headers). */
export function relayMessage(fields: Partial<RelayMessage> = {}): RelayMessage {
  const [message] = relayMessages(1, { firstId: Number(fields.id ?? 1) });
  return { ...(message as RelayMessage), ...fields };
}

export interface SendReport {
  /** Failed attempts that were retried, each with its error. */
  readonly failures: Error[];
  /** The longest time one send took to settle, in ms (a send must never hang). */
  readonly longestSendMs: number;
}

/**
 * Sends every message through `sink` as the relay does: a key's messages strictly one after another
 * (the next only once the previous was confirmed), keys in parallel up to `concurrency`. A failed
 * send is retried after `retryDelayMs` (the relay's backoff) when `retry` says so; a
 * SinkRefusedError is never retried (it would end the row in the DLQ): it fails the run.
 */
export async function sendInKeyOrder(
  sink: RelaySink,
  messages: readonly RelayMessage[],
  options: {
    concurrency: number;
    retry?: (error: Error) => boolean;
    retryDelayMs?: number;
    onConfirmed?: (message: RelayMessage) => void;
    onRetry?: (error: Error, message: RelayMessage) => void;
  },
): Promise<SendReport> {
  const byKey = new Map<string, RelayMessage[]>();
  for (const message of messages) {
    const key = message.orderingKey ?? `(none) ${message.id}`;
    let list = byKey.get(key);
    if (list === undefined) byKey.set(key, (list = []));
    list.push(message);
  }
  const lanes = [...byKey.values()];
  const failures: Error[] = [];
  let longestSendMs = 0;
  const worker = async (): Promise<void> => {
    for (let lane = lanes.shift(); lane !== undefined; lane = lanes.shift()) {
      for (const message of lane) {
        for (;;) {
          const started = performance.now();
          try {
            await sink.send(message, { signal: new AbortController().signal });
            longestSendMs = Math.max(longestSendMs, performance.now() - started);
            options.onConfirmed?.(message);
            break;
          } catch (caught) {
            longestSendMs = Math.max(longestSendMs, performance.now() - started);
            const error = caught instanceof Error ? caught : new Error(String(caught));
            if (error instanceof SinkRefusedError || options.retry?.(error) !== true) throw error;
            failures.push(error);
            options.onRetry?.(error, message);
            // The relay's backoff between two attempts of a row, not a synchronisation.
            await new Promise((resolve) => setTimeout(resolve, options.retryDelayMs ?? 50));
          }
        }
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return { failures, longestSendMs };
}
