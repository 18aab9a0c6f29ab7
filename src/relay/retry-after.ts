import type { RetryContext, RetryStrategy } from '../retry/retry-strategy.js';

/**
 * The longest wait a sink's `retryAfterMs` sets. A receiver down for maintenance may answer
 * `Retry-After: 86400`; past an hour the row waits by the relay's own strategy, which an operator
 * can see and change, rather than a date the receiver picked.
 */
export const RETRY_AFTER_CAP_MS = 60 * 60 * 1000;

/**
 * The wait a failed send asked for: an error's `retryAfterMs` (WebhookUnavailableError's, from the
 * receiver's Retry-After; any sink's error may carry one) when it is a finite number ≥ 0.
 */
export function retryAfterOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const after = (error as { retryAfterMs?: unknown }).retryAfterMs;
  return typeof after === 'number' && Number.isFinite(after) && after >= 0 ? after : undefined;
}

/**
 * A relay's retry strategy with the receiver's `Retry-After` as a floor: a 429 or 503 that asks for
 * 30 s is not sent again after the strategy's first 1 s, which the receiver would only refuse
 * again (and count against the sender's rate limit). The strategy still decides when to give up
 * (`null` stays `null`) and anything longer; what it returns that is not a delay is passed on
 * untouched, for the subscription to treat as it treats any strategy's.
 */
export class RetryAfterFloor implements RetryStrategy {
  readonly inner: RetryStrategy;

  constructor(inner: RetryStrategy) {
    this.inner = inner;
  }

  nextDelayMs(context: RetryContext): number | null {
    const delay = this.inner.nextDelayMs(context);
    const after = retryAfterOf(context.error);
    if (after === undefined || typeof delay !== 'number' || !Number.isFinite(delay)) return delay;
    return Math.max(delay, Math.min(after, RETRY_AFTER_CAP_MS));
  }
}
