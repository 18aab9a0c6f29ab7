import { BoundedRetry, type BoundedRetryOptions, checkNumber } from './bounded-retry.js';
import type { RetryStrategy } from './retry-strategy.js';

export interface ExponentialRetryOptions extends BoundedRetryOptions {
  /** Delay after the first failure. */
  readonly initialDelayMs: number;
  /** Growth per failure. @default 2 */
  readonly multiplier?: number;
  /** Ceiling of a single delay. @default unbounded (one year) */
  readonly maxDelayMs?: number;
}

/** `initialDelayMs × multiplier^(attempt − 1)`, jittered, then capped at `maxDelayMs`. */
export class ExponentialRetry extends BoundedRetry {
  readonly initialDelayMs: number;
  readonly multiplier: number;
  readonly maxDelayMs: number | undefined;

  constructor(options: ExponentialRetryOptions) {
    super('ExponentialRetry', options, ['initialDelayMs', 'multiplier', 'maxDelayMs']);
    this.initialDelayMs = checkNumber('ExponentialRetry', 'initialDelayMs', options.initialDelayMs, 0, false, false);
    this.multiplier = options.multiplier === undefined ? 2 : checkNumber('ExponentialRetry', 'multiplier', options.multiplier, 1);
    this.maxDelayMs =
      options.maxDelayMs === undefined
        ? undefined
        : checkNumber('ExponentialRetry', 'maxDelayMs', options.maxDelayMs, 0, false, false);
  }

  protected baseDelayMs(attempt: number): number {
    // Infinity on overflow is fine: the caps below bring it back to a finite delay.
    return this.initialDelayMs * this.multiplier ** Math.max(0, attempt - 1);
  }

  protected override capDelayMs(delayMs: number): number {
    return this.maxDelayMs === undefined ? delayMs : Math.min(delayMs, this.maxDelayMs);
  }
}

export interface ConstantRetryOptions extends BoundedRetryOptions {
  readonly delayMs: number;
}

/** The same delay after every failure. */
export class ConstantRetry extends BoundedRetry {
  readonly delayMs: number;

  constructor(options: ConstantRetryOptions) {
    super('ConstantRetry', options, ['delayMs']);
    this.delayMs = checkNumber('ConstantRetry', 'delayMs', options.delayMs, 0, false, false);
  }

  protected baseDelayMs(): number {
    return this.delayMs;
  }
}

export interface LinearRetryOptions extends BoundedRetryOptions {
  /** Delay after the first failure. */
  readonly initialDelayMs: number;
  /** Added per further failure. */
  readonly stepMs: number;
}

/** `initialDelayMs + stepMs × (attempt − 1)`. */
export class LinearRetry extends BoundedRetry {
  readonly initialDelayMs: number;
  readonly stepMs: number;

  constructor(options: LinearRetryOptions) {
    super('LinearRetry', options, ['initialDelayMs', 'stepMs']);
    this.initialDelayMs = checkNumber('LinearRetry', 'initialDelayMs', options.initialDelayMs, 0, false, false);
    this.stepMs = checkNumber('LinearRetry', 'stepMs', options.stepMs, 0);
  }

  protected baseDelayMs(attempt: number): number {
    return this.initialDelayMs + this.stepMs * Math.max(0, attempt - 1);
  }
}

/** Never retries: the first failure ends the message as `retry_terminal` (into the DLQ when on). */
export class NoRetry implements RetryStrategy {
  nextDelayMs(): null {
    return null;
  }
}

/**
 * The default: 10 runs over about 8.5 minutes (1 s, 2 s, 4 s … capped at 5 minutes), ±20 %.
 * Never delete-on-first-error (DESIGN invariant 6).
 */
export function defaultRetry(): RetryStrategy {
  return new ExponentialRetry({ initialDelayMs: 1000, multiplier: 2, maxDelayMs: 300_000, maxAttempts: 10, jitter: 0.2 });
}
