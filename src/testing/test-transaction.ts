import { NotInTransactionError } from '../errors.js';
import type { TransactionAdapter } from '../producer/executor.js';
import type { MemoryRow } from './memory-row.js';
import type { MemoryTable } from './memory-table.js';

export type TransactionState = 'open' | 'committed' | 'rolled_back';

/** What a transaction tells its test outbox when it ends. */
export interface TransactionHooks {
  /** The rows it inserted, in id order, once they are in the table. */
  readonly committed: (rows: readonly MemoryRow[]) => void;
  readonly ended: (transaction: TestTransaction) => void;
}

/**
 * A transaction of the test outbox (`outbox.transaction()`): what its publishes insert, its
 * cancelTimer() calls delete and the due times those cancels give back land in the table at
 * commit() and are discarded by rollback(), so "rolled back = never delivered" holds as it does on
 * PostgreSQL. Until then its writes are visible only to itself (fetchUnprocessed(tx), and its own
 * later publishes and cancels).
 *
 * It has the shape of a data layer's TransactionAdapter, so code typed against the real Outbox's
 * `publish(executor: TransactionTarget, …)` accepts it; it runs no SQL, though: a real Outbox
 * given one fails with NotInTransactionError.
 */
export class TestTransaction implements TransactionAdapter {
  readonly txoutboxAdapter = 'txoutbox/testing';
  readonly #table: MemoryTable;
  readonly #hooks: TransactionHooks;
  readonly #inserted: MemoryRow[] = [];
  /** Committed rows this transaction deletes (cancelTimer), locked until it ends. */
  readonly #deleted: MemoryRow[] = [];
  /** Committed rows whose next_attempt_at it changed (a cancelled keyed timer's release), locked until it ends. */
  readonly #released = new Map<number, number>();
  #state: TransactionState = 'open';

  /** @internal Made by TestOutbox.transaction(). */
  constructor(table: MemoryTable, hooks: TransactionHooks) {
    this.#table = table;
    this.#hooks = hooks;
  }

  get state(): TransactionState {
    return this.#state;
  }

  query(): Promise<readonly Record<string, unknown>[]> {
    return Promise.reject(
      new NotInTransactionError(
        'a txoutbox/testing transaction runs no SQL: pass it to the test outbox that made it (outbox.transaction()), not to a real Outbox.',
      ),
    );
  }

  /** Makes its writes visible: inserted rows can be claimed from now on, cancelled timers are gone. */
  commit(): Promise<void> {
    // A promise executor's throw is a rejection: a second commit() rejects, as a failed COMMIT would.
    return new Promise((resolve) => {
      this.#commit();
      resolve();
    });
  }

  #commit(): void {
    this.#end('commit');
    for (const row of this.#deleted) this.#table.delete(row.seq);
    for (const [seq, at] of this.#released) {
      const row = this.#table.get(seq);
      if (row !== undefined) row.nextAttemptAt = at;
      this.#table.unlock(seq, this);
    }
    const inserted = [...this.#inserted].sort((a, b) => a.seq - b.seq);
    for (const row of inserted) this.#table.insert(row);
    this.#state = 'committed';
    this.#hooks.committed(inserted);
    this.#hooks.ended(this);
  }

  /** Discards its writes: nothing it published is ever delivered, cancelled timers stay. */
  rollback(): Promise<void> {
    return new Promise((resolve) => {
      this.#rollback();
      resolve();
    });
  }

  #rollback(): void {
    this.#end('rollback');
    for (const row of this.#deleted) this.#table.unlock(row.seq, this);
    for (const seq of this.#released.keys()) this.#table.unlock(seq, this);
    this.#state = 'rolled_back';
    this.#hooks.ended(this);
  }

  #end(call: string): void {
    if (this.#state !== 'open') {
      throw new NotInTransactionError(`${call}() on a test transaction that was already ${this.#state.replace('_', ' ')}.`);
    }
  }

  /**
   * A write into an ended transaction would land nowhere (an insert after commit() is never in the
   * table) while its caller reports success: the producer checks before writing, and this guards
   * any path that does not.
   */
  #assertOpen(write: string): void {
    if (this.#state !== 'open') {
      throw new NotInTransactionError(
        `txoutbox/testing: a ${write} into a test transaction that was already ${this.#state.replace('_', ' ')}; nothing was written.`,
      );
    }
  }

  /**
   * @internal What this transaction sees, in id order: the committed rows it does not delete (a
   * copy with the due time it gave one), then its own.
   */
  visibleRows(): MemoryRow[] {
    const deleted = new Set(this.#deleted.map((row) => row.seq));
    const committed = this.#table
      .rows()
      .filter((row) => !deleted.has(row.seq))
      .map((row) => {
        const at = this.#released.get(row.seq);
        return at === undefined ? row : { ...row, nextAttemptAt: at };
      });
    return [...committed, ...this.#inserted].sort((a, b) => a.seq - b.seq);
  }

  /** @internal Rows it inserted, not yet committed. */
  get inserted(): readonly MemoryRow[] {
    return this.#inserted;
  }

  /** @internal Whether it deletes the committed row `seq`. */
  deletes(seq: number): boolean {
    return this.#deleted.some((row) => row.seq === seq);
  }

  /** @internal */
  insert(row: MemoryRow): void {
    this.#assertOpen('insert');
    this.#inserted.push(row);
  }

  /** @internal A row it sees: its own insert is dropped, a committed one locked and deleted at commit. */
  delete(row: MemoryRow): void {
    this.#assertOpen('delete');
    const own = this.#inserted.indexOf(row);
    if (own >= 0) {
      this.#inserted.splice(own, 1);
      return;
    }
    this.#table.lock(row.seq, this);
    this.#deleted.push(row);
  }

  /**
   * @internal Gives the row `seq` it sees the due time `at`: its own insert at once; a committed
   * row in its view only, locked, and in the table at commit, as the UPDATE of the
   * cancel_timer statement is.
   */
  release(seq: number, at: number): void {
    this.#assertOpen('release');
    const own = this.#inserted.find((row) => row.seq === seq);
    if (own !== undefined) {
      own.nextAttemptAt = at;
      return;
    }
    this.#table.lock(seq, this);
    this.#released.set(seq, at);
  }
}
