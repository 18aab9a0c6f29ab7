/**
 * Work an Outbox's consumer start can leave until its subscriptions have nothing to do: opening
 * the LISTEN connection and running the setup diagnostics (each a new connection, so a new server
 * process). Neither helps while there is a backlog to drain: NOTIFY only wakes subscriptions that
 * wait, and the diagnostics only log. Started with the first claims, they cost the drain a
 * connection's start-up each on the same cores (on the bench's machine about 18 ms of server CPU
 * per connection; a 20,000-row drain ran 10–20 % faster without the LISTEN one: BENCHMARKS.md,
 * issue 18, round eight).
 *
 * So `run` runs once: when a subscription first waits for work (a claim found nothing), or
 * `maxDelayMs` after `arm()`, whichever comes first (a subscription whose buffer stays full, or
 * whose claims keep failing, never waits). Nothing is lost meanwhile, only delayed by up to
 * maxDelayMs: another process's rows are found by the next claim or poll, and the first LISTEN
 * wakes every subscription once, as every reconnect does, and reads the pauses it missed.
 */
export class UntilFirstWait {
  readonly #run: () => void;
  readonly #maxDelayMs: number;
  #timer: NodeJS.Timeout | undefined;
  #state: 'pending' | 'ran' | 'cancelled' = 'pending';

  constructor(run: () => void, maxDelayMs: number) {
    this.#run = run;
    this.#maxDelayMs = maxDelayMs;
  }

  /** Subscriptions started: run at the first wait or after maxDelayMs; at once when that already happened. */
  arm(): void {
    if (this.#state === 'ran') this.#run();
    if (this.#state !== 'pending') return;
    this.#timer ??= setTimeout(() => {
      this.waited();
    }, this.#maxDelayMs).unref();
  }

  /** A subscription waits for work. */
  waited(): void {
    if (this.#state !== 'pending') return;
    this.#state = 'ran';
    clearTimeout(this.#timer);
    this.#run();
  }

  /** stop(): nothing runs any more. */
  cancel(): void {
    this.#state = 'cancelled';
    clearTimeout(this.#timer);
  }
}
