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

  /** Resolves once a slot was taken for the caller. */
  async take(): Promise<void> {
    if (this.tryTake()) return;
    await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  /** Gives a slot back: to the first waiter, or to the free count. */
  give(): void {
    const next = this.#waiters.shift();
    if (next === undefined) this.#free += 1;
    else next();
  }
}
