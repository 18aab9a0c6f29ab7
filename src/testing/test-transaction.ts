import { NotInTransactionError } from '../errors.js';
import type { TransactionAdapter } from '../producer/executor.js';
import type { MemoryRow } from './memory-row.js';
import type { MemoryTable } from './memory-table.js';

export type TransactionState = 'open' | 'committed' | 'rolled_back';

/** What a transaction tells its test outbox when it ends. */
export interface TransactionHooks {
  readonly nowMs: () => number;
  /** The rows it inserted, in id order, once they are in the table. */
  readonly committed: (rows: readonly MemoryRow[]) => void;
  readonly ended: (transaction: TestTransaction) => void;
}

/**
 * A transaction of the test outbox (`outbox.transaction()`): what its publishes insert and its
 * cancelTimer() calls delete lands in the table at commit() and is discarded by rollback(), so
 * "rolled back = never delivered" holds as it does on PostgreSQL. Until then its rows are visible
 * only to itself (fetchUnprocessed(tx)).
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
    const nowMs = this.#hooks.nowMs();
    for (const row of this.#deleted) {
      this.#table.delete(row.seq);
      this.#table.releaseInherited(row, nowMs);
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
    for (const row of this.#deleted) this.#table.unlock(row.seq);
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

  /** @internal What this transaction sees: the committed rows it does not delete, then its own, in id order. */
  visibleRows(): MemoryRow[] {
    const deleted = new Set(this.#deleted.map((row) => row.seq));
    return [...this.#table.rows().filter((row) => !deleted.has(row.seq)), ...this.#inserted].sort((a, b) => a.seq - b.seq);
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
    this.#table.lock(row.seq);
    this.#deleted.push(row);
  }
}
