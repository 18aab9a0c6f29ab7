import { InvalidOptionError } from '../errors.js';
import type { Stats } from '../instrumentation/custom-stats.js';
import { MAX_DELAY_MS } from '../retry/retry-strategy.js';
import type { HandlerContext } from './message.js';
import type { AckPolicy } from './subscription-options.js';

/** What a handler run decided; the first explicit call wins, later ones are ignored. */
export type Decision =
  | { readonly kind: 'ack' }
  | { readonly kind: 'nack'; readonly delayMs: number | undefined; readonly error: unknown }
  | { readonly kind: 'reject'; readonly reason: string | undefined; readonly error: unknown };

/**
 * `ctx.nack({ delayMs })` is checked at the call: NaN would pass a clamp and PostgreSQL would then
 * reject the interval, leaving the row leased until its TTL. The throw surfaces in the handler, so
 * an uncaught one fails the delivery under the ack policy like any other handler error.
 */
function validNackDelay(delayMs: unknown): number | undefined {
  if (delayMs === undefined) return undefined;
  if (typeof delayMs !== 'number' || !Number.isFinite(delayMs) || delayMs < 0) {
    const error = new InvalidOptionError({
      option: 'ctx.nack({ delayMs })',
      value: delayMs,
      expected: `a finite number of milliseconds >= 0 (above ${MAX_DELAY_MS} ms, one year, it is capped)`,
      fix: 'Omit delayMs to let the retry strategy decide.',
    });
    // renderValue shows NaN and ±Infinity as JSON does (null): name the number itself.
    if (typeof delayMs === 'number') error.message = error.message.replace(', got null.', `, got ${String(delayMs)}.`);
    throw error;
  }
  return delayMs;
}

/**
 * Collects the handler's explicit decision (ctx.ack/nack/reject) and turns its return or throw
 * into one under the ack policy.
 */
export class DecisionRecorder {
  readonly #policy: AckPolicy;
  readonly #onLateCall: (call: string) => void;
  #decision: Decision | undefined;
  #settled = false;

  constructor(policy: AckPolicy, onLateCall: (call: string) => void) {
    this.#policy = policy;
    this.#onLateCall = onLateCall;
  }

  controls(signal: AbortSignal, subscriber: string, stats: Stats): HandlerContext {
    return {
      subscriber,
      signal,
      stats,
      ack: () => {
        this.#decide('ack()', { kind: 'ack' });
      },
      nack: (options) => {
        const delayMs = validNackDelay(options?.delayMs);
        this.#decide('nack()', { kind: 'nack', delayMs, error: options?.error });
      },
      reject: (reason) => {
        this.#decide('reject()', { kind: 'reject', reason, error: undefined });
      },
    };
  }

  #decide(call: string, decision: Decision): void {
    if (this.#settled) {
      this.#onLateCall(call);
      return;
    }
    this.#decision ??= decision;
  }

  /**
   * The final decision once the handler settled. An explicit call wins over the return or throw.
   * 'manual' handlers that return without deciding are nacked (retried by the strategy): losing a
   * row because a code path forgot ctx.ack() would be silent data loss.
   */
  settle(outcome: { threw: false } | { threw: true; error: unknown }): { decision: Decision; forgotten: boolean } {
    this.#settled = true;
    if (this.#decision !== undefined) {
      if (outcome.threw && this.#decision.kind !== 'ack')
        return { decision: { ...this.#decision, error: outcome.error }, forgotten: false };
      return { decision: this.#decision, forgotten: false };
    }
    if (outcome.threw) {
      return this.#policy === 'reject_on_error'
        ? { decision: { kind: 'reject', reason: undefined, error: outcome.error }, forgotten: false }
        : { decision: { kind: 'nack', delayMs: undefined, error: outcome.error }, forgotten: false };
    }
    if (this.#policy === 'manual') return { decision: { kind: 'nack', delayMs: undefined, error: undefined }, forgotten: true };
    return { decision: { kind: 'ack' }, forgotten: false };
  }
}
