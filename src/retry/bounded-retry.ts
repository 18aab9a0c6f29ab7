import { InvalidOptionError } from '../errors.js';
import { rejectUnknownOptions } from '../util/known-options.js';
import { MAX_DELAY_MS, type RetryContext, type RetryStrategy } from './retry-strategy.js';

export interface BoundedRetryOptions {
  /** Handler runs in total, the first included; then the message ends. @default unbounded */
  readonly maxAttempts?: number;
  /** The last retry must be scheduled within this many ms of the first attempt. @default unbounded */
  readonly maxTotalDelayMs?: number;
  /** Randomises each delay by ± this fraction (0.2 = ±20 %) to spread retries of a burst. @default 0 */
  readonly jitter?: number;
  /** Source of randomness in [0, 1), for tests. @default Math.random */
  readonly random?: () => number;
}

export function checkNumber(
  strategy: string,
  option: string,
  value: unknown,
  min: number,
  integer = false,
  inclusive = true,
): number {
  const ok =
    typeof value === 'number' &&
    Number.isFinite(value) &&
    (inclusive ? value >= min : value > min) &&
    (!integer || Number.isInteger(value));
  if (!ok) {
    throw new InvalidOptionError({
      option: `${strategy}.${option}`,
      value,
      expected: `${integer ? 'an integer' : 'a finite number'} ${inclusive ? '>=' : '>'} ${min}`,
    });
  }
  return value;
}

/** BoundedRetryOptions' keys. */
const SHARED_OPTIONS = ['maxAttempts', 'maxTotalDelayMs', 'jitter', 'random'];

/**
 * The limits every built-in strategy shares (attempts, total delay, jitter); subclasses give the
 * base delay for an attempt.
 */
export abstract class BoundedRetry implements RetryStrategy {
  readonly maxAttempts: number | undefined;
  readonly maxTotalDelayMs: number | undefined;
  readonly jitter: number;
  readonly #random: () => number;

  /** `own`: the subclass's option names, beside the shared ones; any other key is refused (a typo). */
  protected constructor(strategy: string, options: BoundedRetryOptions, own: readonly string[]) {
    // Called from JavaScript with anything: `new ConstantRetry()` threw a TypeError, `maxAttempt`
    // (a typo) never gave up, and `random: 0.5` dead-lettered every failure on its first run.
    if (typeof options !== 'object' || (options as BoundedRetryOptions | null) === null) {
      throw new InvalidOptionError({
        option: `${strategy} options`,
        value: options,
        expected: `an object of ${strategy}'s options`,
      });
    }
    rejectUnknownOptions(options, strategy, [...own, ...SHARED_OPTIONS], `${strategy}.`);
    if (options.random !== undefined && typeof options.random !== 'function') {
      throw new InvalidOptionError({
        option: `${strategy}.random`,
        value: options.random,
        expected: 'a function returning a number in [0, 1)',
      });
    }
    this.maxAttempts =
      options.maxAttempts === undefined ? undefined : checkNumber(strategy, 'maxAttempts', options.maxAttempts, 1, true);
    this.maxTotalDelayMs =
      options.maxTotalDelayMs === undefined
        ? undefined
        : checkNumber(strategy, 'maxTotalDelayMs', options.maxTotalDelayMs, 0, false, false);
    this.jitter = options.jitter === undefined ? 0 : checkNumber(strategy, 'jitter', options.jitter, 0);
    if (this.jitter > 1) {
      throw new InvalidOptionError({
        option: `${strategy}.jitter`,
        value: this.jitter,
        expected: 'a fraction from 0 to 1 (0.2 = ±20 %)',
      });
    }
    this.#random = options.random ?? Math.random;
  }

  /** The delay before retrying after `attempt` failed runs, before jitter and limits. */
  protected abstract baseDelayMs(attempt: number): number;

  /** Upper bound applied after jitter (ExponentialRetry's maxDelayMs). */
  protected capDelayMs(delayMs: number): number {
    return delayMs;
  }

  nextDelayMs(context: RetryContext): number | null {
    if (this.maxAttempts !== undefined && context.attempt >= this.maxAttempts) return null;
    const base = this.baseDelayMs(context.attempt);
    const jittered = base * (1 + (this.#random() * 2 - 1) * this.jitter);
    const delay = Math.min(Math.max(0, this.capDelayMs(jittered)), MAX_DELAY_MS);
    if (this.maxTotalDelayMs !== undefined) {
      const elapsed = context.lastAttemptAt.getTime() - context.firstAttemptAt.getTime();
      if (elapsed + delay > this.maxTotalDelayMs) return null;
    }
    return Math.round(delay);
  }
}
