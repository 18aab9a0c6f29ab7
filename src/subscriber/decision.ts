import type pg from 'pg';

import { InvalidOptionError, NotInTransactionError } from '../errors.js';
import type { Stats } from '../instrumentation/custom-stats.js';
import { MAX_DELAY_MS } from '../retry/retry-strategy.js';
import type { Logger } from '../util/logger.js';
import type { DeliverySignal } from './delivery-signal.js';
import { causedBy, type PublishFollowUp, withCause } from './follow-up.js';
import { deliveryScope, type Lease } from './lease.js';
import type { CausedBy, HandlerContext } from './message.js';
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

const ACK: Decision = { kind: 'ack' };

/**
 * One delivery's `ctx` (the HandlerContext a handler gets) and the decision it collects: the
 * handler's explicit call (ctx.ack/nack/reject), or its return or throw under the ack policy.
 *
 * One object per delivery, and nothing more until a handler asks: `ack`, `nack` and `reject` are
 * getters that make their (bound, destructurable: `async (m, { ack }) => …`) function on first
 * read, and the signal is made when `signal` is first read. On the drain path most handlers touch
 * none of them.
 */
export class DeliveryControls implements HandlerContext {
  readonly subscriber: string;
  readonly stats: Stats;
  readonly #policy: AckPolicy;
  readonly #signal: DeliverySignal;
  readonly #logger: Logger;
  readonly #lease: Lease;
  #decision: Decision | undefined;
  #settled = false;
  #ack: (() => void) | undefined;
  #nack: HandlerContext['nack'] | undefined;
  #reject: HandlerContext['reject'] | undefined;
  #publish: HandlerContext['publish'] | undefined;
  readonly #followUp: PublishFollowUp;
  #client: pg.PoolClient | undefined;

  constructor(
    policy: AckPolicy,
    signal: DeliverySignal,
    subscriber: string,
    stats: Stats,
    logger: Logger,
    lease: Lease,
    followUp: PublishFollowUp,
  ) {
    this.#policy = policy;
    this.#signal = signal;
    this.subscriber = subscriber;
    this.stats = stats;
    this.#logger = logger;
    this.#lease = lease;
    this.#followUp = followUp;
  }

  /** A transactional delivery's open transaction becomes `ctx.client` (delivery-transaction.ts). */
  bindTransaction(client: pg.PoolClient): void {
    this.#client = client;
  }

  get client(): pg.PoolClient {
    if (this.#client === undefined) {
      throw new NotInTransactionError(
        'ctx.client exists only in a transactional subscription: subscribe(queues, handler, { transactional: true }) runs the handler in a transaction and commits its writes with the ack (architecture/transactional-consume.md).',
      );
    }
    return this.#client;
  }

  get publish(): HandlerContext['publish'] {
    return (this.#publish ??= (queue, body, options) =>
      this.#followUp(this.#client, queue, body, withCause(options, this.#lease.record)));
  }

  get causedBy(): () => CausedBy {
    return () => causedBy(this.#lease.record);
  }

  get signal(): AbortSignal {
    return this.#signal.signal;
  }

  get ack(): () => void {
    return (this.#ack ??= () => {
      this.#decide('ack()', ACK);
    });
  }

  get nack(): HandlerContext['nack'] {
    return (this.#nack ??= (options) => {
      const delayMs = validNackDelay(options?.delayMs);
      this.#decide('nack()', { kind: 'nack', delayMs, error: options?.error });
    });
  }

  get reject(): HandlerContext['reject'] {
    return (this.#reject ??= (reason) => {
      this.#decide('reject()', { kind: 'reject', reason, error: undefined });
    });
  }

  /**
   * Whether the handler called nack() or reject() itself: that decision stands whatever it threw.
   * An ack() does not count here: it cannot stand on a transaction that failed under it.
   */
  get nackedOrRejected(): boolean {
    return this.#decision !== undefined && this.#decision.kind !== 'ack';
  }

  #decide(call: string, decision: Decision): void {
    if (this.#settled) {
      this.#logger.warn(deliveryScope(this.#lease, this.subscriber), `ctx.${call} called after the handler settled; ignored`);
      return;
    }
    this.#decision ??= decision;
  }

  /**
   * The final decision once the handler settled. An explicit call wins over the return or throw.
   * 'manual' handlers that return without deciding are nacked (retried by the strategy): losing a
   * row because a code path forgot ctx.ack() would be silent data loss.
   */
  settle(threw: boolean, error: unknown): { decision: Decision; forgotten: boolean } {
    this.#settled = true;
    if (this.#decision !== undefined) {
      if (threw && this.#decision.kind !== 'ack') return { decision: { ...this.#decision, error }, forgotten: false };
      return { decision: this.#decision, forgotten: false };
    }
    if (threw) {
      return this.#policy === 'reject_on_error'
        ? { decision: { kind: 'reject', reason: undefined, error }, forgotten: false }
        : { decision: { kind: 'nack', delayMs: undefined, error }, forgotten: false };
    }
    if (this.#policy === 'manual') return { decision: { kind: 'nack', delayMs: undefined, error: undefined }, forgotten: true };
    return SETTLED_ACK;
  }
}

const SETTLED_ACK = { decision: ACK, forgotten: false } as const;
