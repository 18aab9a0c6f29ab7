import type pg from 'pg';

import { errorMessage } from '../errors.js';
import type { Logger } from '../util/logger.js';
import type { Statement } from '../util/statement.js';

/** Result of one ack: the row was deleted, the lease was lost (another holder owns it), or the write failed. */
export type AckResult = 'deleted' | 'lease_lost' | 'failed';

interface PendingAck {
  readonly id: string;
  readonly token: string;
  readonly resolve: (result: AckResult) => void;
}

/** Rows per DELETE: bounds one statement's arrays and lock footprint. */
export const MAX_ACK_BATCH = 1000;

/**
 * Coalesces the successful deletes of every handler slot of a subscription into one
 * `DELETE … USING unnest(ids, tokens) … RETURNING id` per event-loop turn.
 *
 * States:
 *   idle      nothing pending, no DELETE in flight.         enqueue → scheduled
 *   scheduled acks pending, a flush is queued (setImmediate) flush  → flushing
 *   flushing  one DELETE in flight; new acks wait for it.   done   → scheduled (more pending) | idle
 *
 * Immediate when idle (the DELETE leaves on the next turn), batched under load: everything that
 * completes while a DELETE is in flight goes out in the next one. One DELETE in flight at a time
 * per subscription bounds its connection use to one.
 * A failed DELETE resolves its acks as 'failed': those rows keep their leases and are redelivered
 * after expiry (at-least-once), never lost.
 */
export class Acker {
  readonly #pool: pg.Pool;
  readonly #statement: Statement;
  readonly #prepared: boolean;
  readonly #logger: Logger;
  #pending: PendingAck[] = [];
  #state: 'idle' | 'scheduled' | 'flushing' = 'idle';
  #idleWaiters: (() => void)[] = [];

  constructor(pool: pg.Pool, statement: Statement, prepared: boolean, logger: Logger) {
    this.#pool = pool;
    this.#statement = statement;
    this.#prepared = prepared;
    this.#logger = logger;
  }

  /** Queues the delete of (id, token); resolves with what the database did. */
  ack(id: string, token: string): Promise<AckResult> {
    return new Promise((resolve) => {
      this.#pending.push({ id, token, resolve });
      if (this.#state === 'idle') this.#schedule();
    });
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
    try {
      const values = [batch.map((a) => a.id), batch.map((a) => a.token)];
      const { text, name } = this.#statement;
      const result = await this.#pool.query<{ id: string }>(this.#prepared ? { name, text, values } : { text, values });
      const deleted = new Set(result.rows.map((row) => row.id));
      for (const ack of batch) ack.resolve(deleted.has(ack.id) ? 'deleted' : 'lease_lost');
    } catch (error) {
      this.#logger.error(
        { err: errorMessage(error), rows: batch.length },
        'ack DELETE failed; those rows keep their leases and will be redelivered after the lease expires',
      );
      for (const ack of batch) ack.resolve('failed');
    }
    if (this.#pending.length > 0) {
      this.#schedule();
      return;
    }
    this.#state = 'idle';
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }
}
