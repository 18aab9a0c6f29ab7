import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  ConstantRetry,
  ExponentialRetry,
  InvalidOptionError,
  LinearRetry,
  NoRetry,
  type RetryStrategy,
} from '../../src/index.js';
import { defaultRetry } from '../../src/retry/strategies.js';

const T0 = new Date('2026-01-01T00:00:00Z');

/** Delays for attempts 1..n with no time elapsed between attempts. */
function schedule(strategy: RetryStrategy, n: number): (number | null)[] {
  return Array.from({ length: n }, (_, i) =>
    strategy.nextDelayMs({ attempt: i + 1, firstAttemptAt: T0, lastAttemptAt: T0, error: new Error('x') }),
  );
}

describe('retry strategies', () => {
  test('ExponentialRetry doubles, caps at maxDelayMs, and stops after maxAttempts handler runs', () => {
    const strategy = new ExponentialRetry({ initialDelayMs: 1000, maxDelayMs: 5000, maxAttempts: 5 });
    assert.deepEqual(schedule(strategy, 6), [1000, 2000, 4000, 5000, null, null]);
  });

  test('LinearRetry and ConstantRetry', () => {
    assert.deepEqual(schedule(new LinearRetry({ initialDelayMs: 100, stepMs: 50, maxAttempts: 4 }), 4), [100, 150, 200, null]);
    assert.deepEqual(schedule(new ConstantRetry({ delayMs: 250 }), 3), [250, 250, 250]);
  });

  test('NoRetry ends on the first failure', () => {
    assert.deepEqual(schedule(new NoRetry(), 2), [null, null]);
  });

  test('maxTotalDelayMs is an upper bound on first attempt → next attempt', () => {
    const strategy = new ConstantRetry({ delayMs: 1000, maxTotalDelayMs: 2500 });
    const at = (elapsedMs: number) =>
      strategy.nextDelayMs({
        attempt: 2,
        firstAttemptAt: T0,
        lastAttemptAt: new Date(T0.getTime() + elapsedMs),
        error: undefined,
      });
    assert.equal(at(1500), 1000);
    assert.equal(at(1501), null);
  });

  test('jitter stays within ± the fraction and is applied before the cap', () => {
    const low = new ExponentialRetry({ initialDelayMs: 1000, jitter: 0.2, random: () => 0 });
    const high = new ExponentialRetry({ initialDelayMs: 1000, jitter: 0.2, maxDelayMs: 1100, random: () => 0.999999 });
    assert.equal(low.nextDelayMs({ attempt: 1, firstAttemptAt: T0, lastAttemptAt: T0, error: undefined }), 800);
    assert.equal(high.nextDelayMs({ attempt: 1, firstAttemptAt: T0, lastAttemptAt: T0, error: undefined }), 1100);
  });

  test('a huge exponent saturates instead of overflowing', () => {
    const strategy = new ExponentialRetry({ initialDelayMs: 1000, multiplier: 10 });
    const delay = strategy.nextDelayMs({ attempt: 400, firstAttemptAt: T0, lastAttemptAt: T0, error: undefined });
    assert.equal(delay, 365 * 24 * 3600 * 1000);
  });

  test('the default is exponential 1 s ×2 up to 5 min over 10 runs, ±20 %', () => {
    const strategy = defaultRetry();
    assert.ok(strategy instanceof ExponentialRetry);
    assert.equal(strategy.initialDelayMs, 1000);
    assert.equal(strategy.multiplier, 2);
    assert.equal(strategy.maxDelayMs, 300_000);
    assert.equal(strategy.maxAttempts, 10);
    assert.equal(strategy.jitter, 0.2);
  });

  test('bad parameters name the strategy and option', () => {
    const cases: [() => unknown, string][] = [
      [() => new ExponentialRetry({ initialDelayMs: 0 }), 'ExponentialRetry.initialDelayMs'],
      [() => new ExponentialRetry({ initialDelayMs: 1, multiplier: 0.5 }), 'ExponentialRetry.multiplier'],
      [() => new ExponentialRetry({ initialDelayMs: 1, maxAttempts: 0 }), 'ExponentialRetry.maxAttempts'],
      [() => new ExponentialRetry({ initialDelayMs: 1, maxAttempts: 1.5 }), 'ExponentialRetry.maxAttempts'],
      [() => new ConstantRetry({ delayMs: -1 }), 'ConstantRetry.delayMs'],
      [() => new ConstantRetry({ delayMs: 1, jitter: 1.5 }), 'ConstantRetry.jitter'],
      [() => new LinearRetry({ initialDelayMs: 1, stepMs: -1 }), 'LinearRetry.stepMs'],
      [() => new LinearRetry({ initialDelayMs: 1, stepMs: 1, maxTotalDelayMs: 0 }), 'LinearRetry.maxTotalDelayMs'],
      // Reported (review): a typo never gave up (maxAttempt) or never capped (maxDelay); random: 0.5
      // dead-lettered every failure on its first run; no options at all threw a TypeError.
      [() => new ExponentialRetry({ initialDelayMs: 1000, maxAttempt: 5 } as never), 'ExponentialRetry.maxAttempt'],
      [() => new ExponentialRetry({ initialDelayMs: 1000, maxDelay: 5 } as never), 'ExponentialRetry.maxDelay'],
      [() => new ConstantRetry({ delayMs: 10, random: 0.5 } as never), 'ConstantRetry.random'],
      [() => new ConstantRetry(undefined as never), 'ConstantRetry options'],
      [() => new LinearRetry(null as never), 'LinearRetry options'],
    ];
    for (const [make, option] of cases) {
      assert.throws(make, (error: unknown) => error instanceof InvalidOptionError && error.option === option, option);
    }
  });
});
