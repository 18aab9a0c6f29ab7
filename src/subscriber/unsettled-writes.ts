import type { ClaimedRecord } from './message.js';

type Written = Pick<ClaimedRecord, 'id' | 'attempts_count'>;

/**
 * One transaction's written rows, watched while the server is asked what became of it.
 * `reclaimed` turns true when a claim returned one of them as the transaction had claimed it.
 */
export interface UnsettledWrite {
  readonly reclaimed: boolean;
  /** Stops watching (the outcome is known, or no longer asked for). */
  end(): void;
}

/**
 * The rows written by a subscription's transactions whose COMMIT went unanswered, while the server
 * is asked what became of them (transaction-outcome.ts), each with the attempts_count it was claimed
 * with. A claim of the same subscription that returns one of those rows with that attempts_count
 * proves its transaction did not commit: the commit would have deleted the row or raised its
 * attempts_count, and nothing lowers it.
 * Why a subscription needs this as well as the rows' own check (`unwritten`): after a failover the
 * new primary has the rows as they were, unlocked. They can be claimed, handled and ended there
 * before the server can say what became of the lost transaction's id. By then the rows are gone, as
 * the lost commit would have left them, and the id may name a transaction of the new primary's own,
 * committed. This subscription's own claims are seen here first. Another process's are not (a
 * documented limit: architecture/subscriber.md, "Database failures").
 * Costs a claim nothing while nothing is watched.
 */
export class UnsettledWrites {
  readonly #byId = new Map<string, { readonly attempts: number; readonly watch: Watch }>();

  /** Watches `records` (as their transaction claimed them) until the returned watch ends. */
  watch(records: readonly Written[]): UnsettledWrite {
    const watch = new Watch(this.#byId, records);
    for (const record of records) this.#byId.set(record.id, { attempts: record.attempts_count, watch });
    return watch;
  }

  /** Whether anything is watched (a claim needs showing). */
  get watching(): boolean {
    return this.#byId.size > 0;
  }

  /** A claim of this subscription returned `records`. */
  claimed(records: readonly Written[]): void {
    if (this.#byId.size === 0) return;
    for (const record of records) {
      const watched = this.#byId.get(record.id);
      if (watched !== undefined && watched.attempts === record.attempts_count) watched.watch.reclaimed = true;
    }
  }
}

class Watch implements UnsettledWrite {
  reclaimed = false;
  readonly #byId: Map<string, { readonly watch: Watch }>;
  readonly #records: readonly Written[];

  constructor(byId: Map<string, { readonly watch: Watch }>, records: readonly Written[]) {
    this.#byId = byId;
    this.#records = records;
  }

  end(): void {
    for (const { id } of this.#records) if (this.#byId.get(id)?.watch === this) this.#byId.delete(id);
  }
}
