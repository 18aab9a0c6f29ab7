/**
 * Wakes someone when rows known to be due later come due, so they run on time instead of at the
 * next poll (which backs off to maxPollIntervalMs while nothing is claimed: a 1 s retry could run
 * 10 s late). Two users:
 * - a subscription over one queue, for the retries it wrote: a retry sends no NOTIFY, and nothing
 *   else would say so (one over several queues learns the due time from its claims' reports,
 *   queue-schedule.ts). The row is due at the database's clock_timestamp() at the write plus the
 *   delay; `dueAt` is taken after the write returned, so it is not earlier;
 * - ConsumerSignals, one per queue, for delayed publishes announced on the channel
 *   (channel-signal.ts): due `inMs` after the notification arrived, which is after the publish;
 *   and for the delayed rows it read from the table when its LISTEN connection (re)connected,
 *   announced while nobody here listened (due-times-sql.ts).
 *
 * Either way the due time is read on Node's clock, which is not the database's: as long as the two
 * run at the same rate, each wake-up comes a margin late (MARGIN_MS, plus DRIFT of the delay, for
 * clocks that drift over a long one). A wake-up that came early anyway finds nothing, and the row
 * is left to the poll. One timer, at most MAX_TIMER_MS ahead (Node fires a longer one at once);
 * the due times wait in a sorted list, at most MAX_PENDING of them; a due time with one already
 * listed at it or within COALESCE_MS after it is not listed (announcements of one time, as a
 * burst's are, keep one entry). Due times within COALESCE_MS after the earliest share one
 * wake-up, at the last of them (a batch of failures retried together wakes the loop once).
 * Together a wake-up comes at most 2 × COALESCE_MS after a due time, plus the margin: never before
 * it. After clear() (stop()) it arms nothing. Retries whose write's outcome stayed unknown (a lost
 * answer) set none.
 *
 * Where the list is known to end early — the latest due times did not fit in MAX_PENDING, or a
 * read of the table returned as many rows as it asked for (unknownAfter) — the alarm calls
 * `refill` once that point has passed, for the owner to read the times beyond it (ConsumerSignals);
 * without a `refill` those rows are left to the poll.
 */

/** Pending due times kept; beyond this the latest are refilled once the rest fired (or left to the poll). */
const MAX_PENDING = 1_000;
/** Due times this close after the earliest are woken for together, at the last of them. */
const COALESCE_MS = 10;
/** Timers may fire a millisecond early (rounding); a wake-up before the row is due finds nothing. */
const MARGIN_MS = 2;
/** Added per millisecond of delay: how far Node's clock and the database's may drift apart (1,000 ppm). */
const DRIFT = 1e-3;
/** The longest setTimeout Node takes (2^31 − 1 ms, ~24.8 days): a longer one fires at once. */
const MAX_TIMER_MS = 2_147_483_647;

export interface DueAlarmOptions {
  /** The clock the due times are read on (a test's controllable one). */
  readonly now?: () => number;
  /** Called once the point where the list is known to end early has passed (see above). */
  readonly refill?: () => void;
}

export class DueAlarm {
  readonly #wake: () => void;
  readonly #now: () => number;
  readonly #refill: (() => void) | undefined;
  /** performance.now() due times, ascending; the first one is armed. */
  readonly #pending: number[] = [];
  /** Beyond this wake-up time the list may lack due times: refill once it has fired. */
  #knownUntil = Number.POSITIVE_INFINITY;
  #timer: NodeJS.Timeout | undefined;
  #armedAt = Number.POSITIVE_INFINITY;
  #closed = false;

  constructor(wake: () => void, options: DueAlarmOptions = {}) {
    this.#wake = wake;
    this.#now = options.now ?? (() => performance.now());
    this.#refill = options.refill;
  }

  /** A row due at `dueAt` (performance.now() time, taken no earlier than the row's due time minus its delay). */
  add(dueAt: number): void {
    if (this.#closed) return;
    const at = this.#wakeUpTime(dueAt);
    const pending = this.#pending;
    if (pending.length >= MAX_PENDING && at >= (pending.at(-1) ?? Number.POSITIVE_INFINITY)) {
      this.#knownUntil = Math.min(this.#knownUntil, pending.at(-1) ?? at);
      return;
    }
    // The first listed time not before `at`.
    let low = 0;
    let high = pending.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if ((pending[mid] ?? Number.POSITIVE_INFINITY) < at) low = mid + 1;
      else high = mid;
    }
    // One listed at `at` or within COALESCE_MS after it covers it (never early).
    if ((pending[low] ?? Number.POSITIVE_INFINITY) - at <= COALESCE_MS) return;
    pending.splice(low, 0, at);
    if (pending.length > MAX_PENDING) {
      pending.pop();
      this.#knownUntil = Math.min(this.#knownUntil, pending.at(-1) ?? at);
    }
    // Earlier than the armed wake-up, or one more of its group (within COALESCE_MS of the earliest).
    if (at < this.#armedAt || at <= (pending[0] ?? at) + COALESCE_MS) this.#arm();
  }

  /**
   * Due times after `dueAt` (added, or covered by one added) may be missing: a read of the table
   * that stopped at its limit there.
   */
  unknownAfter(dueAt: number): void {
    if (this.#closed) return;
    this.#knownUntil = Math.min(this.#knownUntil, this.#wakeUpTime(dueAt));
  }

  /** Stops the timer and forgets every due time, for good (stop()). */
  clear(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedAt = Number.POSITIVE_INFINITY;
    this.#pending.length = 0;
  }

  #wakeUpTime(dueAt: number): number {
    return dueAt + MARGIN_MS + Math.max(0, dueAt - this.#now()) * DRIFT;
  }

  #arm(): void {
    clearTimeout(this.#timer);
    const next = this.#pending[0];
    if (next === undefined) {
      this.#timer = undefined;
      this.#armedAt = Number.POSITIVE_INFINITY;
      return;
    }
    let at = next;
    for (const later of this.#pending) {
      if (later > next + COALESCE_MS) break;
      at = later;
    }
    this.#armedAt = at;
    this.#timer = setTimeout(
      () => {
        this.#fire();
      },
      Math.min(MAX_TIMER_MS, Math.max(0, at - this.#now())),
    );
    // A subscription that is stopping or idle must not be kept alive by an alarm.
    this.#timer.unref();
  }

  #fire(): void {
    const now = this.#now();
    const due = this.#pending.findIndex((at) => at > now);
    const fired = due === -1 ? this.#pending.length : due;
    this.#pending.splice(0, fired);
    this.#arm();
    // Nothing due yet: a timer capped at MAX_TIMER_MS, or one that fired early.
    if (fired > 0) this.#wake();
    if (now >= this.#knownUntil) {
      this.#knownUntil = Number.POSITIVE_INFINITY;
      this.#refill?.();
    }
  }
}
