/** A running asynchronous handler's run (deliver.ts's PendingRun), which a timeout fails at once. */
export interface Interruptible {
  interrupt(reason: unknown): void;
}

/**
 * The AbortSignal of one delivery (`ctx.signal`), made when a handler first reads it. Most
 * handlers never do, and an AbortController per delivery was the largest allocation on the drain
 * path (~1.7 KB and ~2.5 µs each, a tenth of txoutbox's CPU per message in the W3 benchmark).
 * An abort that comes before the first read is kept and applied then: a handler that looks late
 * still sees an aborted signal with its reason.
 */
export class DeliverySignal {
  #controller: AbortController | undefined;
  #aborted = false;
  #timedOut = false;
  #reason: unknown;

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  /**
   * Set while an asynchronous handler runs (deliver.ts): ends its run at once with a failure,
   * without waiting for the handler's promise, which may never settle.
   */
  pending: Interruptible | undefined = undefined;

  /** The handler returned, threw or settled (or was failed by a timeout): what is left is its outcome. */
  handlerEnded = false;

  /**
   * The run took too long: aborts the signal, and fails a running asynchronous handler with
   * `reason` now (its delivery goes on to its outcome under the ack policy). A synchronous handler
   * cannot be interrupted; nor can a consume middleware that holds the run before or after it.
   */
  timeOut(reason: unknown): void {
    this.#timedOut = true;
    this.abort(reason);
    this.pending?.interrupt(reason);
  }

  /** It was timed out: a handler not started yet (a middleware held its run) is not started at all. */
  get timedOut(): boolean {
    return this.#timedOut;
  }

  /** Aborts once; later calls are ignored (as AbortController.abort is). */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}
