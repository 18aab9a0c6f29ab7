/** Hears whether a queued slot wait got its slot (true) or was withdrawn (false). */
export type SlotWaiter = (taken: boolean) => void;

/**
 * `concurrency` handler slots shared by a row-lock subscription's loops (row-lock-subscription.ts):
 * whichever batch has rows takes the free slots, so handlers in flight never exceed `concurrency`
 * however many batches are open. Waiters are served in order.
 * No promise of its own: a batch at concurrency 1 waits for a slot before every row, and an async
 * wait plus a reaction on the batch's deadline per row were most of what an asynchronous handler
 * cost a row-lock drain above a synchronous one (BENCHMARKS.md, "Round eighteen").
 */
export class HandlerSlots {
  #free: number;
  readonly #waiters: SlotWaiter[] = [];

  constructor(size: number) {
    this.#free = size;
  }

  /** Takes a slot if one is free. */
  tryTake(): boolean {
    if (this.#free === 0) return false;
    this.#free -= 1;
    return true;
  }

  /** Queues `waiter`: it is called with true once a slot was taken for it (give()). */
  wait(waiter: SlotWaiter): void {
    this.#waiters.push(waiter);
  }

  /**
   * Takes `waiter` out of the queue and tells it false: it holds no slot (a row-lock batch past its
   * start budget must not wait behind other batches' handlers with its rows locked). Nothing
   * happens to a waiter already served: its slot stays taken.
   */
  withdraw(waiter: SlotWaiter): void {
    const index = this.#waiters.indexOf(waiter);
    if (index === -1) return;
    this.#waiters.splice(index, 1);
    waiter(false);
  }

  /** Gives a slot back: to the first waiter, or to the free count. */
  give(): void {
    const next = this.#waiters.shift();
    if (next === undefined) this.#free += 1;
    else next(true);
  }
}
