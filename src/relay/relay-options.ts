import { InvalidOptionError } from '../errors.js';
import type { RetryStrategy } from '../retry/retry-strategy.js';
import { ExponentialRetry, NoRetry } from '../retry/strategies.js';
import type { SubscribeOptions } from '../subscriber/subscription-options.js';
import { RetryAfterFloor } from './retry-after.js';
import type { RelaySink } from './sink.js';

/**
 * outbox.relay()'s options: a subscription's, but for the ack policy, which is the relay's own (a
 * confirmed send deletes the row, a refusal ends it into the DLQ, any other failure retries).
 */
export type RelayOptions = Omit<SubscribeOptions, 'ackPolicy'>;

/** A sink's name is a metric label and part of the default subscriber name: short and plain. */
const SINK_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;

/**
 * What a relay does unless told otherwise. Sends are broker round trips, not work: many in flight
 * (a sink batches concurrent sends) and big claims. A broker outage is not the row's fault, so
 * retries never give up on their own (no maxAttempts: rows wait in the table, the one place that
 * holds them safely) and back off to a minute, which bounds how late a row is once the broker is back.
 */
export const RELAY_DEFAULTS = {
  concurrency: 64,
  fetchBatchSize: 100,
  retry: new ExponentialRetry({ initialDelayMs: 1_000, maxDelayMs: 60_000, jitter: 0.2 }),
} as const;

/** Checks the sink's shape once (a JavaScript caller can pass anything). */
export function validateSink(sink: unknown): RelaySink {
  const candidate = sink as Partial<RelaySink> | null;
  const problem =
    typeof sink !== 'object' || candidate === null
      ? 'not an object'
      : typeof candidate.name !== 'string' || !SINK_NAME.test(candidate.name)
        ? 'its name is not 1–64 letters, digits, _ . - starting with a letter'
        : typeof candidate.send !== 'function'
          ? 'it has no send(message, context) method'
          : typeof candidate.close !== 'function'
            ? 'it has no close() method'
            : candidate.check !== undefined && typeof candidate.check !== 'function'
              ? 'its check is not a method'
              : undefined;
  if (problem !== undefined) {
    throw new InvalidOptionError({
      option: 'sink',
      value: typeof sink === 'object' && sink !== null ? { name: candidate?.name } : sink,
      expected: `a RelaySink (${problem})`,
      fix: 'Create one with rabbitmqSink(), natsSink(), redisStreamSink() or webhookSink() from txoutbox/relay, or implement RelaySink.',
    });
  }
  return sink as RelaySink;
}

/** The subscription options a relay runs with: RELAY_DEFAULTS under the caller's, named after the sink. */
export function relaySubscribeOptions(sink: RelaySink, options: unknown): SubscribeOptions & { name: string } {
  if (options !== undefined && (typeof options !== 'object' || options === null || Array.isArray(options))) {
    throw new InvalidOptionError({ option: 'options', value: options, expected: 'an object of relay options' });
  }
  const raw = (options ?? {}) as Record<string, unknown>;
  if ('ackPolicy' in raw) {
    throw new InvalidOptionError({
      option: 'ackPolicy',
      value: raw.ackPolicy,
      expected: 'no ackPolicy in relay options',
      fix: "A relay's outcome is the broker's: a confirm deletes the row, a refusal ends it into the DLQ, any other failure retries.",
    });
  }
  // Neither is tested with a relay, and neither buys it anything: a relay's effect is outside the
  // database, and a row-lock batch would hold its locks and a transaction while the broker answers.
  for (const [option, value, allowed] of [
    ['lease', raw.lease, 'token'],
    ['transactional', raw.transactional, false],
  ] as const) {
    if (value !== undefined && value !== allowed) {
      throw new InvalidOptionError({
        option,
        value,
        expected: `${JSON.stringify(allowed)} (or nothing) for a relay`,
        fix: 'A relay deletes a row once its broker confirmed it, fenced by its lease; drop this option from the relay options.',
      });
    }
  }
  // A bad name is reported by the subscription's own validation.
  const name = (raw.name ?? `relay:${sink.name}`) as string;
  // An option passed as undefined (`{ retry: config.retry }`) keeps the relay's default, not the
  // subscription's: that one gives up after 10 attempts, dead-lettering rows during an outage.
  const given = Object.fromEntries(Object.entries(raw).filter(([, value]) => value !== undefined)) as RelayOptions;
  const retry = honourRetryAfter(given.retry ?? RELAY_DEFAULTS.retry);
  return { ...RELAY_DEFAULTS, ...given, retry, name, ackPolicy: 'nack_on_error' };
}

/**
 * The strategy with the sinks' Retry-After as a floor (retry-after.ts). Something that is not a
 * strategy is passed on for the subscription's validation to name; NoRetry never waits.
 */
function honourRetryAfter(retry: unknown): RetryStrategy {
  const valid =
    typeof retry === 'object' && retry !== null && typeof (retry as Partial<RetryStrategy>).nextDelayMs === 'function';
  return valid && !(retry instanceof NoRetry) && !(retry instanceof RetryAfterFloor)
    ? new RetryAfterFloor(retry as RetryStrategy)
    : (retry as RetryStrategy);
}
