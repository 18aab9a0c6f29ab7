/**
 * An interruptible sleep with memory: `notify()` ends the current sleep, or — when nobody is
 * sleeping — makes the next sleep return at once, so a wake-up that arrives while the loop is busy
 * is never lost.
 */
export class Wakeup {
  #pending = false;
  #wake: (() => void) | undefined;

  notify(): void {
    if (this.#wake === undefined) {
      this.#pending = true;
      return;
    }
    const wake = this.#wake;
    this.#wake = undefined;
    wake();
  }

  /**
   * Ends the current sleep, if any, without leaving a wake-up for the next one (unlike notify()).
   * For a caller that stopped waiting on the sleep (it lost a race): its timer is cleared instead
   * of keeping the process alive until it fires.
   */
  cancel(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Sleeps up to `ms` (forever when undefined) or until notify() or cancel(). */
  async sleep(ms?: number): Promise<void> {
    if (this.#pending) {
      this.#pending = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        if (this.#wake === done) this.#wake = undefined;
        resolve();
      };
      const timer = ms === undefined ? undefined : setTimeout(done, ms);
      this.#wake = done;
    });
  }
}
