import { type Attributes, createNoopMeter, type MeterProvider, metrics } from '@opentelemetry/api';

import type { OutboxEvent, Recorder } from '../instrumentation/events.js';
import { boundedLabels } from '../prometheus/labels.js';
import type { Logger } from '../util/logger.js';
import { ATTR, INSTRUMENTATION_SCOPE, MESSAGING_SYSTEM, OPERATION } from './attributes.js';
import { createInstruments, type Instruments } from './instruments.js';
import { resolveProvider, resolveRaw } from './options.js';

export interface OpenTelemetryRecorderOptions {
  /**
   * Where instruments are created. @default the global provider (`metrics.setGlobalMeterProvider`,
   * the Node SDK's), even one registered after the recorder was made
   */
  readonly meterProvider?: MeterProvider;
  /**
   * Distinct `messaging.destination.name` values of publishes (`published` events) with points of
   * their own; the rest are recorded as `_other`, with one warning. The SDK's cardinality limit
   * does not bound this with cumulative temporality (see the recorder). 1 to 100,000. @default 500
   */
  readonly maxDestinations?: number;
  /** Distinct `error.type` values, every event together; the rest are `_other`. 1 to 10,000. @default 100 */
  readonly maxExceptionTypes?: number;
  /** Where the warning of a bound reached goes. A pino logger fits. @default JSON lines on stderr, as the Outbox's */
  readonly logger?: Logger;
}

const KNOWN = ['meterProvider', 'maxDestinations', 'maxExceptionTypes', 'logger'];

type Operation = (typeof OPERATION)[keyof typeof OPERATION];

/**
 * The attributes every outbox measurement carries. All bounded: subscriber names and the queues
 * they subscribe to come from the code base, a published queue name and an exception class name
 * (`error.type`) are bounded by maxDestinations and maxExceptionTypes; row ids, correlation ids
 * and error messages never appear.
 */
function base(queue: string, subscriber: string | undefined, operation?: Operation): Attributes {
  const attributes: Attributes = { [ATTR.system]: MESSAGING_SYSTEM, [ATTR.destination]: queue };
  if (subscriber !== undefined) attributes[ATTR.subscriber] = subscriber;
  if (operation !== undefined) {
    attributes[ATTR.operationType] = operation.type;
    attributes[ATTR.operationName] = operation.name;
  }
  return attributes;
}

/**
 * OpenTelemetry metrics from the recorder seam: every measurement, since tracingMiddleware makes
 * spans only (so nothing is recorded twice when both are registered). Event → instrument:
 *
 * | event | instrument | extra attributes |
 * | --- | --- | --- |
 * | `published` | `messaging.client.operation.duration` (s) | `error.type` on error |
 * | `published` ok | `messaging.client.sent.messages` += rows inserted | |
 * | `fetched` | `messaging.client.consumed.messages` += rows claimed (semconv: "pulled from the broker") | |
 * | `fetched` | `messaging.outbox.fetches` += 1 | `messaging.outbox.fetch.non_empty` |
 * | `dispatched` | `messaging.outbox.message.age` (s) | |
 * | `acked`, `nacked_retried`, `nacked_terminal` with a duration | `messaging.process.duration` (s) | `messaging.outbox.outcome` (ack, retry, terminal), `error.type` |
 * | `nacked_retried` | `messaging.outbox.retries` += 1 | `error.type` |
 * | `nacked_terminal` | `messaging.outbox.terminal` += 1 | `messaging.outbox.terminal.reason`, `error.type` |
 * | `lease_lost` | `messaging.outbox.lease_lost` += 1 | `messaging.outbox.lease.phase` |
 * | `dlq_written` | `messaging.outbox.dlq_written` += 1 | `messaging.outbox.terminal.reason` (the failure reason), `error.type` |
 * | `drain_timeout` | `messaging.outbox.drain_timeouts` += 1 | subscriber only (a drain spans all its queues) |
 * | `relayed` | `messaging.outbox.relay.messages` += 1, `messaging.outbox.relay.send.duration` (s) | `messaging.outbox.relay.sink`, `.relay.outcome`, `error.type` |
 * | `relayed` confirmed | `messaging.outbox.relay.lag` (s, created_at → broker confirm) | `.relay.sink` |
 * | `relay_batch` | `messaging.outbox.relay.batch.messages` ({message}), `messaging.outbox.relay.batch.duration` (s) | `.relay.sink` |
 *
 * Outcome events fire once the database write landed, so `messaging.process.duration` counts
 * handler runs whose outcome stuck; a run whose lease was lost is in `lease_lost` instead. A failed
 * publish adds nothing to `sent.messages` (the event does not say how many bodies the call had);
 * it shows as a `client.operation.duration` sample with `error.type`. `error.type` is set only when
 * something was thrown (or passed to ctx.nack / ctx.reject): a deliberate nack is an outcome.
 *
 * Events this version does not know are ignored, so an Outbox that reports more does not break it.
 *
 * Without `meterProvider` the global provider is used, even one registered after the recorder was
 * made (globalInstruments below); events before that registration are not counted anywhere.
 *
 * The SDK's cardinality limit (2,000 points per instrument, then `otel.metric.overflow`) holds per
 * collection only: with cumulative temporality (the Prometheus exporter's, OTLP's default) each
 * collection keeps every point of the last one, so in sdk-metrics 2.12 five collections of 10,000
 * new queues each held 9,996 points and kept growing. maxDestinations bounds it here instead.
 */
export function openTelemetryRecorder(options?: OpenTelemetryRecorderOptions): Recorder {
  const raw = resolveRaw(options, 'openTelemetryRecorder', KNOWN);
  const provider = resolveProvider(raw, 'meterProvider', 'getMeter', 'new MeterProvider({ readers })') as
    MeterProvider | undefined;
  const { destinations, exceptionTypes: errorTypes } = boundedLabels(raw, 'openTelemetryRecorder', {
    destination: ATTR.destination,
    exceptionType: ATTR.errorType,
  });
  const withError = (attributes: Attributes, exceptionType: string | undefined): Attributes => {
    if (exceptionType !== undefined) attributes[ATTR.errorType] = errorTypes.admit(exceptionType);
    return attributes;
  };
  const instruments =
    provider === undefined ? globalInstruments() : constant(createInstruments(provider.getMeter(INSTRUMENTATION_SCOPE)));

  return (event: OutboxEvent): void => {
    const m = instruments();
    if (m === undefined) return; // no meter provider registered yet: nothing would be exported
    switch (event.type) {
      case 'published': {
        // Any queue name can be published to; only subscribed ones (bounded) reach the other events.
        const attributes = base(destinations.admit(event.queue), undefined, OPERATION.send);
        m.clientOperationDuration.record(event.durationSeconds, withError({ ...attributes }, event.exceptionType));
        // Messages attempted, as the convention counts them: a failed call's with its error.type.
        if (event.status === 'ok') m.sentMessages.add(event.count, attributes);
        else m.sentMessages.add(event.messageCount, withError({ ...attributes }, event.exceptionType));
        return;
      }
      case 'fetched':
        m.consumedMessages.add(event.count, base(event.queue, event.subscriber, OPERATION.receive));
        m.fetches.add(1, { ...base(event.queue, event.subscriber), [ATTR.nonEmpty]: String(event.count > 0) });
        return;
      case 'dispatched':
        // NaN only from an unreadable created_at; a histogram sample of NaN would poison its sum.
        if (Number.isFinite(event.ageSeconds)) m.messageAge.record(event.ageSeconds, base(event.queue, event.subscriber));
        return;
      case 'acked':
        m.processDuration.record(event.durationSeconds, {
          ...base(event.queue, event.subscriber, OPERATION.process),
          [ATTR.outcome]: 'ack',
        });
        return;
      case 'nacked_retried':
        m.processDuration.record(
          event.durationSeconds,
          withError({ ...base(event.queue, event.subscriber, OPERATION.process), [ATTR.outcome]: 'retry' }, event.exceptionType),
        );
        m.retries.add(1, withError(base(event.queue, event.subscriber), event.exceptionType));
        return;
      case 'nacked_terminal':
        // No duration for max_deliveries: no handler ran.
        if (event.durationSeconds !== undefined) {
          m.processDuration.record(
            event.durationSeconds,
            withError(
              { ...base(event.queue, event.subscriber, OPERATION.process), [ATTR.outcome]: 'terminal' },
              event.exceptionType,
            ),
          );
        }
        m.terminal.add(
          1,
          withError({ ...base(event.queue, event.subscriber), [ATTR.terminalReason]: event.reason }, event.exceptionType),
        );
        return;
      case 'lease_lost':
        m.leaseLost.add(1, { ...base(event.queue, event.subscriber), [ATTR.leasePhase]: event.phase });
        return;
      case 'dlq_written':
        m.dlqWritten.add(
          1,
          withError({ ...base(event.queue, event.subscriber), [ATTR.terminalReason]: event.failureReason }, event.exceptionType),
        );
        return;
      case 'drain_timeout':
        m.drainTimeouts.add(1, { [ATTR.system]: MESSAGING_SYSTEM, [ATTR.subscriber]: event.subscriber });
        return;
      case 'relayed': {
        const sink = { ...base(event.queue, event.subscriber), [ATTR.relaySink]: event.sink };
        const outcome = withError({ ...sink, [ATTR.relayOutcome]: event.outcome }, event.exceptionType);
        m.relayMessages.add(1, outcome);
        // Non-finite values only from a broken clock; a NaN sample would poison the histogram's sum.
        if (Number.isFinite(event.confirmSeconds)) m.relaySendDuration.record(event.confirmSeconds, outcome);
        if (event.outcome === 'confirmed' && event.lagSeconds !== undefined && Number.isFinite(event.lagSeconds)) {
          m.relayLag.record(event.lagSeconds, sink);
        }
        return;
      }
      case 'relay_batch': {
        const sink = { ...base(event.queue, event.subscriber), [ATTR.relaySink]: event.sink };
        m.relayBatchMessages.record(event.messages, sink);
        if (Number.isFinite(event.durationSeconds)) m.relayBatchDuration.record(event.durationSeconds, sink);
        return;
      }
      default:
        return; // an event type added after this version
    }
  };
}

function constant(m: Instruments): () => Instruments {
  return () => m;
}

/**
 * Instruments of the global meter provider, created once one is registered. The API (1.9) has no
 * proxy meter provider: until the SDK registers one, `metrics.getMeterProvider()` is a no-op whose
 * instruments drop everything, forever. A recorder is easily made before `sdk.start()` (a
 * module-level `new Outbox({ recorder })` runs before the SDK's module under ESM import
 * hoisting), so the global provider is asked again at each event while it is still the no-op one
 * (its meter is the API's `createNoopMeter()` singleton). Once a real one answers, its
 * instruments are kept: no per-event lookup, and a provider registered later (after
 * `metrics.disable()`) does not take them over, as with instruments made from a provider.
 */
function globalInstruments(): () => Instruments | undefined {
  const noop = createNoopMeter();
  let resolved: Instruments | undefined;
  return () => {
    if (resolved !== undefined) return resolved;
    const meter = metrics.getMeter(INSTRUMENTATION_SCOPE);
    if (meter === noop) return undefined;
    resolved = createInstruments(meter);
    return resolved;
  };
}
