import { errorMessage } from '../errors.js';
import type { OutcomeWrite } from '../instrumentation/middleware.js';
import { backoffMs, delay } from '../util/backoff.js';
import type { Logger } from '../util/logger.js';
import type { Statement } from '../util/statement.js';
import type { StatementRunner } from '../util/statement-runner.js';
import { unanswered } from '../util/unanswered.js';
import type { Lease } from './lease.js';
import { type MissedPair, pairKey, pairValues } from './sql.js';

/** Result of one ack: the row was deleted, the lease was lost (another holder owns it), or the write failed. */
export type AckResult = 'deleted' | 'lease_lost' | 'failed';

/** One successful delivery waiting for its DELETE. */
export interface AckEntry {
  readonly lease: Lease;
  readonly durationSeconds: number;
  /** Hears what the DELETE did, for the consume middleware's `ctx.written`; only when one runs. */
  readonly written: ((result: OutcomeWrite) => void) | undefined;
}

/** Rows per DELETE: bounds one statement's arrays and lock footprint. */
export const MAX_ACK_BATCH = 1000;

/**
 * Tries of one ack DELETE before its rows are left to lease expiry: ~100 ms, ~200 ms, ~400 ms apart,
 * so a dropped connection or a failover's first seconds cost a retry, not a batch of redeliveries.
 * Fencing makes a retry safe: a row whose lease was lost meanwhile matches nothing.
 */
export const ACK_ATTEMPTS = 4;
const ACK_RETRY_BASE_MS = 100;

/**
 * Coalesces the successful deletes of every handler slot of a subscription into one
 * `DELETE … USING unnest(ids, tokens)` per event-loop turn (sql.ts ackMissed), which answers with
 * the (id, token) pairs it did not delete: those leases were lost.
 *
 * States:
 *   idle      nothing pending, no DELETE in flight.         enqueue → scheduled
 *   scheduled acks pending, a flush is queued (setImmediate) flush  → flushing
 *   flushing  one DELETE in flight; new acks wait for it.   done   → scheduled (more pending) | idle
 *
 * Immediate when idle (the DELETE leaves on the next turn), batched under load: everything that
 * completes while a DELETE is in flight goes out in the next one. One DELETE in flight at a time
 * per subscription bounds its connection use to one.
 * A failed DELETE is retried (ACK_ATTEMPTS); one that keeps failing resolves its acks as 'failed':
 * those rows keep their leases and are redelivered after expiry (at-least-once), never lost. A
 * DELETE that committed but whose answer was lost (a client-side timeout, a connection lost after
 * it left: no error from the server) finds nothing on its retry. While the lease cannot have run
 * out on the server yet (`heldUntil`), nobody else can have claimed the row, so a pair that retry
 * missed was deleted by the earlier try: 'deleted'. Past that it may have been another holder's
 * doing, and it settles as 'lease_lost', the one case where that event may not mean another holder.
 * Not when the row is there under another token or none (sql.ts ackMissed `not_ours`): that try
 * deleted nothing ('lease_lost'), as after a failover to a standby the claim never reached, where
 * the row is there unleased.
 */
export class Acker {
  readonly #db: Pick<StatementRunner, 'run'>;
  readonly #statement: Statement;
  readonly #logger: Logger;
  readonly #settle: (entry: AckEntry, result: AckResult) => void;
  readonly #heldUntil: (lease: Lease) => number;
  #pending: AckEntry[] = [];
  /** The batch whose DELETE is in flight. */
  #sending: readonly AckEntry[] = [];
  #state: 'idle' | 'scheduled' | 'flushing' = 'idle';
  #idleWaiters: (() => void)[] = [];

  /**
   * `settle` hears, for every entry, what its DELETE did; it must not throw. `heldUntil`: the
   * performance.now() before which the lease cannot have run out on the server (leaseHeldUntil);
   * by default never, so a retry's missed pair is always 'lease_lost'.
   */
  constructor(
    db: Pick<StatementRunner, 'run'>,
    statement: Statement,
    logger: Logger,
    settle: (entry: AckEntry, result: AckResult) => void,
    heldUntil: (lease: Lease) => number = () => Number.NEGATIVE_INFINITY,
  ) {
    this.#db = db;
    this.#statement = statement;
    this.#logger = logger;
    this.#settle = settle;
    this.#heldUntil = heldUntil;
  }

  /** Queues the delete of the entry's (id, token); `settle` hears what the database did. */
  ack(entry: AckEntry): void {
    this.#pending.push(entry);
    if (this.#state === 'idle') this.#schedule();
  }

  /**
   * The leases whose delete is queued or in flight. A holder may adopt a re-claim's token on them
   * (Subscription #adoptReclaimed): a queued one's DELETE reads the new token when it is built; an
   * in-flight one that then misses is queued again under it (#flush), not reported as a lost lease.
   */
  queued(): readonly AckEntry[] {
    return this.#sending.length === 0 ? this.#pending : [...this.#sending, ...this.#pending];
  }

  /** Resolves once every queued ack has been written (or failed). */
  async drain(): Promise<void> {
    if (this.#state === 'idle') return;
    await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
  }

  #schedule(): void {
    this.#state = 'scheduled';
    setImmediate(() => {
      void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    this.#state = 'flushing';
    const batch = this.#pending.splice(0, MAX_ACK_BATCH);
    this.#sending = batch;
    const sentTokens = batch.map((ack) => ack.lease.token);
    const answer = await this.#delete(batch);
    this.#sending = [];
    if (answer === undefined) {
      for (const ack of batch) this.#settle(ack, 'failed');
    } else {
      const { rows, afterUnanswered, answeredAt } = answer;
      // The DELETE answers with the pairs it missed. None (the common case): no set to build.
      // Otherwise match (id, token): the same row can be in one batch twice, under an expired
      // lease and under the one that re-claimed it.
      const missed = rows.length === 0 ? undefined : new Map(rows.map((row) => [pairKey(row.id, row.token), row.not_ours]));
      batch.forEach((ack, i) => {
        const sent = sentTokens[i] ?? ack.lease.token;
        const notOurs = missed?.get(pairKey(ack.lease.record.id, sent));
        const hit = notOurs === undefined;
        // Missed under the token it was sent with, but its holder adopted a newer lease of the row
        // meanwhile (its own subscription re-claimed it): delete again under that one.
        if (!hit && ack.lease.token !== sent) this.#pending.push(ack);
        // Missed by a retry while the lease still held on the server, and not there under another
        // token or none: the unanswered try deleted it.
        else if (notOurs === false && afterUnanswered && answeredAt < this.#heldUntil(ack.lease)) this.#settle(ack, 'deleted');
        else this.#settle(ack, hit ? 'deleted' : 'lease_lost');
      });
    }
    if (this.#pending.length > 0) {
      this.#schedule();
      return;
    }
    this.#state = 'idle';
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  /**
   * The batch's DELETE, retried: the pairs it did not delete (lost leases), whether an earlier try
   * failed without the server's answer (it may have deleted them), and when the answer came;
   * undefined when every try failed.
   */
  async #delete(
    batch: readonly AckEntry[],
  ): Promise<{ readonly rows: MissedPair[]; readonly afterUnanswered: boolean; readonly answeredAt: number } | undefined> {
    const values = pairValues(batch.map((a) => a.lease));
    let afterUnanswered = false;
    for (let attempt = 1; ; attempt += 1) {
      try {
        const { rows } = await this.#db.run<MissedPair>(this.#statement, values);
        return { rows, afterUnanswered, answeredAt: performance.now() };
      } catch (error) {
        // Unanswered (a client-side timeout, a lost connection): this autocommit DELETE may have committed.
        if (unanswered(error)) afterUnanswered = true;
        const fields = { err: errorMessage(error), rows: batch.length, attempt };
        if (attempt >= ACK_ATTEMPTS) {
          this.#logger.error(
            fields,
            'ack DELETE failed; those rows keep their leases and will be redelivered after the lease expires',
          );
          return undefined;
        }
        const pauseMs = backoffMs(attempt, ACK_RETRY_BASE_MS, ACK_RETRY_BASE_MS * 2 ** ACK_ATTEMPTS);
        this.#logger.warn({ ...fields, pauseMs: Math.round(pauseMs) }, 'ack DELETE failed; retrying');
        await delay(pauseMs);
      }
    }
  }
}
