/** A relay's retry strategy with the sinks' Retry-After as a floor (src/relay/retry-after.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConstantRetry, NoRetry, type RetryStrategy } from '../../src/index.js';
import { relaySubscribeOptions } from '../../src/relay/relay-options.js';
import { RETRY_AFTER_CAP_MS, RetryAfterFloor, retryAfterOf } from '../../src/relay/retry-after.js';
import { WebhookUnavailableError } from '../../src/relay/sinks/webhook-errors.js';
import { webhookSink } from '../../src/relay/sinks/webhook-sink.js';

const T0 = new Date('2026-01-01T00:00:00Z');
const delayAfter = (strategy: RetryStrategy, error: unknown, attempt = 1) =>
  strategy.nextDelayMs({ attempt, firstAttemptAt: T0, lastAttemptAt: T0, error });

test('the receiver asks for longer than the strategy: its wait, up to the cap', () => {
  const floor = new RetryAfterFloor(new ConstantRetry({ delayMs: 1_000 }));
  const throttled = (ms: number) => new WebhookUnavailableError('429', { status: 429, retryAfterMs: ms });
  assert.equal(delayAfter(floor, throttled(30_000)), 30_000);
  assert.equal(delayAfter(floor, throttled(200)), 1_000, 'never shorter than the strategy');
  assert.equal(delayAfter(floor, throttled(7 * 24 * 3600_000)), RETRY_AFTER_CAP_MS);
  assert.equal(delayAfter(floor, new Error('no hint')), 1_000);
  assert.equal(delayAfter(floor, { retryAfterMs: 5_000 }), 5_000, "any sink's error may carry one");
});

test('a strategy that gives up still gives up; what is not a wait is ignored', () => {
  const giveUp = new RetryAfterFloor(new ConstantRetry({ delayMs: 10, maxAttempts: 1 }));
  assert.equal(delayAfter(giveUp, { retryAfterMs: 5_000 }), null);
  for (const odd of [-1, Number.NaN, Number.POSITIVE_INFINITY, '30', null]) {
    assert.equal(retryAfterOf({ retryAfterMs: odd }), undefined, String(odd));
  }
  assert.equal(retryAfterOf(undefined), undefined);
  // A strategy's own bad answer reaches the subscription untouched, which ends the row for it.
  const bad = new RetryAfterFloor({ nextDelayMs: () => Number.NaN });
  assert.ok(Number.isNaN(delayAfter(bad, { retryAfterMs: 5_000 })));
});

test("relay options: the default and a user's strategy get the floor; NoRetry and a non-strategy do not", () => {
  const sink = webhookSink({ url: 'http://127.0.0.1:9/x' });
  const given = new ConstantRetry({ delayMs: 10 });
  assert.equal((relaySubscribeOptions(sink, { retry: given }).retry as RetryAfterFloor).inner, given);
  const none = new NoRetry();
  assert.equal(relaySubscribeOptions(sink, { retry: none }).retry, none);
  const notAStrategy = { nextDelay: 1 } as never;
  assert.equal(relaySubscribeOptions(sink, { retry: notAStrategy }).retry, notAStrategy);
});
