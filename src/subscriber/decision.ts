import type { Stats } from '../instrumentation/custom-stats.js';
import type { HandlerContext } from './message.js';
import type { AckPolicy } from './subscription-options.js';

/** What a handler run decided; the first explicit call wins, later ones are ignored. */
export type Decision =
  | { readonly kind: 'ack' }
  | { readonly kind: 'nack'; readonly delayMs: number | undefined; readonly error: unknown }
  | { readonly kind: 'reject'; readonly reason: string | undefined; readonly error: unknown };

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
        this.#decide('nack()', { kind: 'nack', delayMs: options?.delayMs, error: options?.error });
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
