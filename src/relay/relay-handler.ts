import { performance } from 'node:perf_hooks';

import { SinkRefusedError } from '../errors.js';
import { exceptionTypeOf, type RelayOutcome } from '../instrumentation/events.js';
import type { Emit } from '../instrumentation/recorders.js';
import type { Handler, Message } from '../subscriber/message.js';
import { RelayBatches } from './relay-batches.js';
import type { RelayMessage, RelaySink } from './sink.js';
import { abortable } from './sinks/abortable.js';

/**
 * The row as the sink gets it: the stored bytes and headers, and a message id stable across
 * redeliveries and unique across databases, `<table>:<source>:<row id>` (source-id.ts).
 */
export function toRelayMessage(table: string, source: string, message: Message): RelayMessage {
  return {
    messageId: `${table}:${source}:${message.id}`,
    id: message.id,
    queue: message.queue,
    orderingKey: message.orderingKey,
    payload: message.payload,
    headers: message.headers,
    correlationId: message.correlationId,
    createdAt: message.createdAt,
    deliveriesCount: message.deliveriesCount,
  };
}

/**
 * A sink's permanent refusal, by its code as well as its class: a sink built against the package's
 * CommonJS build throws that build's SinkRefusedError, which `instanceof` in the ESM build would not
 * recognize — and a refusal taken for a failure retries forever (and holds its key).
 */
function isRefusal(error: unknown): boolean {
  return error instanceof SinkRefusedError || (error as { code?: unknown } | null)?.code === 'SINK_REFUSED';
}

export interface RelayHandlerDeps {
  readonly sink: RelaySink;
  /** The outbox table's display name: the messageId's prefix. */
  readonly table: string;
  /** The table's source id (source-id.ts), read once: the messageId's middle part. */
  readonly sourceId: () => Promise<string>;
  readonly subscriber: string;
  readonly emit: Emit;
}

/**
 * The handler a relay subscribes with: one send, and the row's outcome is the broker's. Returning
 * acks (the row is deleted only now, after the confirm); a SinkRefusedError is decided as a
 * rejection (into the DLQ, the refusal as its last exception); any other error retries by the
 * relay's strategy. Everything else — claims, leases, ordering per key, retries, the DLQ, the
 * consume middlewares — is the subscription's. With a recorder, each send reports a `relayed`
 * event and each turn's sends a `relay_batch` event.
 */
export function relayHandler({ sink, table, sourceId, subscriber, emit }: RelayHandlerDeps): Handler {
  const batches = emit === undefined ? undefined : new RelayBatches(sink.name, subscriber, emit);
  return async (message, ctx) => {
    // Failing to read it (the database is away) fails the delivery before anything is sent: a retry.
    const relayed = toRelayMessage(table, await sourceId(), message);
    const startedAt = performance.now();
    const batch = batches?.join(message.queue);
    const report = (outcome: RelayOutcome, error?: unknown): void => {
      if (emit === undefined) return;
      const now = performance.now();
      emit({
        type: 'relayed',
        queue: message.queue,
        subscriber,
        messageId: message.id,
        deliveriesCount: message.deliveriesCount,
        sink: sink.name,
        outcome,
        confirmSeconds: (now - startedAt) / 1000,
        ...(outcome === 'confirmed' ? { lagSeconds: Math.max(0, (Date.now() - message.createdAt.getTime()) / 1000) } : {}),
        ...(error === undefined ? {} : { exceptionType: exceptionTypeOf(error) }),
      });
      batch?.settle(outcome, now);
    };
    try {
      // Raced with the signal too: a sink that ignores it (a custom one) held the report (and the
      // batch's event) past the delivery's timeout or stop(), and its late success read as confirmed.
      await abortable(sink.send(relayed, { signal: ctx.signal }), ctx.signal);
    } catch (error) {
      const refused = isRefusal(error);
      report(refused ? 'refused' : 'failed', error);
      // Decided, then rethrown: the rejection stands and the DLQ row keeps the refusal as its error.
      if (refused) ctx.reject((error as SinkRefusedError).reason);
      throw error;
    }
    report('confirmed');
  };
}
