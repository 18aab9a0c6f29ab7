/**
 * `concurrency` handler slots shared by a row-lock subscription's loops (row-lock-subscription.ts):
 * whichever batch has rows takes the free slots, so handlers in flight never exceed `concurrency`
 * however many batches are open. Waiters are served in order.
 */
export class HandlerSlots {
  #free: number;
  readonly #waiters: (() => void)[] = [];

  constructor(size: number) {
    this.#free = size;
  }

  /** Takes a slot if one is free (no promise on the hot path). */
  tryTake(): boolean {
    if (this.#free === 0) return false;
    this.#free -= 1;
    return true;
  }

  /**
   * Resolves true once a slot was taken for the caller, or false when `until` resolved first: the
   * caller then holds no slot and has left the queue (a row-lock batch past its deadline must not
   * wait behind other batches' handlers with its rows locked).
   */
  async take(until?: Promise<void>): Promise<boolean> {
    if (this.tryTake()) return true;
    return new Promise<boolean>((resolve) => {
      const waiter = (): void => {
        resolve(true);
      };
      this.#waiters.push(waiter);
      void until?.then(() => {
        const index = this.#waiters.indexOf(waiter);
        if (index === -1) return;
        this.#waiters.splice(index, 1);
        resolve(false);
      });
    });
  }

  /** Gives a slot back: to the first waiter, or to the free count. */
  give(): void {
    const next = this.#waiters.shift();
    if (next === undefined) this.#free += 1;
    else next();
  }
}
