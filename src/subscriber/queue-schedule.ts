/**
 * Which of a subscription's queues its next claim lists (lease mode, `subscribe(queues[])`; issue
 * 18). A claim over several queues probes every listed queue's head (claim-many-sql.ts), so listing
 * all of them made the claim cost per message grow with the queue count. Here each queue is
 *
 *   unknown  listed by every claim until a claim reports on it: at start, after a wake (NOTIFY or
 *            a local publish for that queue), after a LISTEN (re)connect (every queue: a missed
 *            notification must not strand one), when its recheck time came, and when a row of it
 *            that this subscription held comes back (a delivery ended: it may have been retried;
 *            a buffered row was given back)
 *   active   the last report saw a row due now: listed in turn, at most `maxActivePerClaim` per
 *            claim (fewer while claims come back full: #cap) and at most half of the active queues, the ones listed longest ago first
 *            (round robin), so none starves. Half: the subscription's two pipelined claims then
 *            list different queues, instead of the second walking past the rows the first holds
 *            locked (claim-many-sql.ts, the fill pass)
 *   idle     the last report saw no row due: not listed until `until` — its next row's due time,
 *            capped at `safetyNetMs` from the report (minPollIntervalMs), so a publish whose
 *            notification never came (notify off, LISTEN down, another process's retry or an
 *            expired lease of a dead holder) is found within that time while the subscription
 *            claims; once every queue is idle the claim loop sleeps its poll backoff (cut short
 *            by a wake or the first known due time: msUntilDue) and the next claim lists every
 *            queue whose time passed, as often as a poll over every queue did
 *
 * The claim reports every listed queue (claim-many-sql.ts `claimReportCte`): the milliseconds until
 * its first ready row not taken by this claim is due (<= 0: due now), NULL when it has none or is
 * paused. Reports are snapshots, so a wake that came after the claim was planned wins over its
 * report (the woken queue stays unknown), and a report of an older claim never overrides a newer
 * one's (two claims can be in flight: subscription.ts, pipelined claims).
 */
import type { ClaimedRowTexts } from './claimed-row.js';

export interface QueueScheduleOptions {
  readonly queues: readonly string[];
  /** Active queues listed per claim: ceil(fetchBatchSize / 2), so each can give about two rows. */
  readonly maxActivePerClaim: number;
  /** The longest an idle queue goes unlisted (minPollIntervalMs). */
  readonly safetyNetMs: number;
}

/** One claim's queues, and when it was planned (reports older than a wake or a newer plan are ignored). */
export interface ClaimPlan {
  readonly queues: readonly string[];
  readonly epoch: number;
  /** The rows the claim asks for: a full claim narrows the next ones (see #cap). */
  readonly limit: number;
}

/** A claim's rows, split: the claimed rows and the per-queue reports (ms until due; null: nothing to claim). */
export interface SplitClaimRows {
  readonly claimed: ClaimedRowTexts[];
  readonly reports: Map<string, number | null>;
}

/**
 * A claimMany row is a report when its id (first column) is NULL; the report's queue and due
 * milliseconds are its last two columns (claim-many-sql.ts REPORT_COLUMNS), NULL on claimed rows.
 */
export function splitClaimRows(rows: readonly ClaimedRowTexts[]): SplitClaimRows {
  const claimed: ClaimedRowTexts[] = [];
  const reports = new Map<string, number | null>();
  for (const row of rows) {
    if (row[0] !== null) {
      claimed.push(row);
      continue;
    }
    const queue = row[row.length - 2];
    const due = row[row.length - 1];
    if (queue === null || queue === undefined) throw new Error('claim report row without a queue');
    reports.set(queue, due === null || due === undefined ? null : Number(due));
  }
  return { claimed, reports };
}

export class QueueSchedule {
  readonly #options: QueueScheduleOptions;
  readonly #all: ReadonlySet<string>;
  readonly #unknown = new Set<string>();
  /** In listing order: a listed queue moves to the end (round robin). */
  readonly #active = new Set<string>();
  /** Idle queue → performance.now() from which it is listed again, and when its next row is due (Infinity: none known). */
  readonly #idle = new Map<string, { readonly until: number; readonly dueAt: number }>();
  /** The earliest `until` in #idle (Infinity when none): plan() scans #idle only once it passed. */
  #nextRecheck = Number.POSITIVE_INFINITY;
  /** The earliest `dueAt` in #idle: an idle claim loop sleeps no longer (msUntilDue). */
  #nextDue = Number.POSITIVE_INFINITY;
  /** Increases with every plan and wake: orders them. */
  #epoch = 0;
  /** The epoch of each queue's last wake. */
  readonly #wokenAt = new Map<string, number>();
  /** The epoch at which a key of each queue was last freed (keyFreed). */
  readonly #keyFreedAt = new Map<string, number>();
  /**
   * Active queues listed per claim now: maxActivePerClaim at first and after an empty claim;
   * halved after a full one (the queues hold more than their share), down to #floor; after a
   * short one, as many as the rows per listed queue it saw would fill a claim with (the queues
   * hold about that many each), which becomes #floor. Each listed queue costs index probes
   * whether it gives two rows or twenty: with deep queues, fewer of them per claim, in longer
   * turns. At one, a claim over a single queue is claimOne with its report (sql.ts
   * claimOneReported): the statement, and its planning on every execution, of a single-queue
   * subscription. The floor keeps shallow queues from halving into short claims (1,000 queues ×
   * 20 rows: five per claim fill it, two or three do not).
   */
  #cap: number;
  #floor = 1;
  /**
   * Queues an empty claim listed and reported on since the last claim that took a row, and not
   * woken since (see moreToTry). A queue whose report a later wake overrode is not in it: that
   * claim's snapshot predates the wake, so the queue was not tried.
   */
  readonly #triedEmpty = new Set<string>();
  /** The epoch of the plan whose report set each queue's state last. */
  readonly #reportedAt = new Map<string, number>();

  constructor(options: QueueScheduleOptions) {
    this.#options = options;
    this.#all = new Set(options.queues);
    this.#cap = options.maxActivePerClaim;
    for (const queue of options.queues) this.#unknown.add(queue);
  }

  /**
   * The queues the next claim lists: every unknown one, then up to maxActivePerClaim active ones in
   * turn (after empty claims, those not tried since first). May be empty.
   */
  plan(now: number, limit: number): ClaimPlan {
    if (now >= this.#nextRecheck) this.#recheckDue(now);
    const queues = [...this.#unknown];
    const taken: string[] = [];
    const cap = Math.min(this.#cap, Math.ceil(this.#active.size / 2));
    // After empty claims, the active queues not tried since (a delivery of theirs ended, a key
    // freed) first: a woken queue is listed next, not after a round of queues that gave nothing.
    if (this.#triedEmpty.size > 0) {
      for (const queue of this.#active) {
        if (taken.length >= cap) break;
        if (!this.#triedEmpty.has(queue)) taken.push(queue);
      }
    }
    for (const queue of this.#active) {
      if (taken.length >= cap) break;
      if (!taken.includes(queue)) taken.push(queue);
    }
    for (const queue of taken) {
      this.#active.delete(queue);
      this.#active.add(queue);
      queues.push(queue);
    }
    this.#epoch += 1;
    return { queues, epoch: this.#epoch, limit };
  }

  /** Applies a claim's reports (see the file comment) and returns its claimed rows. */
  learn(plan: ClaimPlan, rows: readonly ClaimedRowTexts[], now: number): ClaimedRowTexts[] {
    const { claimed, reports } = splitClaimRows(rows);
    const empty = claimed.length === 0;
    if (!empty) this.#triedEmpty.clear();
    const max = this.#options.maxActivePerClaim;
    if (claimed.length >= plan.limit) this.#cap = Math.max(this.#floor, Math.floor(this.#cap / 2));
    else if (claimed.length === 0) this.#cap = max;
    else {
      this.#floor = Math.min(max, Math.ceil((plan.limit * plan.queues.length) / claimed.length));
      this.#cap = this.#floor;
    }
    for (const queue of plan.queues) {
      if ((this.#wokenAt.get(queue) ?? 0) > plan.epoch) continue;
      if ((this.#reportedAt.get(queue) ?? 0) > plan.epoch) continue;
      this.#reportedAt.set(queue, plan.epoch);
      if (empty && (this.#keyFreedAt.get(queue) ?? 0) < plan.epoch) this.#triedEmpty.add(queue);
      // No report (it should not happen): listed again, as if due.
      const due = reports.get(queue) ?? (reports.has(queue) ? null : 0);
      if (due === null || due > 0) {
        const dueAt = now + (due ?? Number.POSITIVE_INFINITY);
        this.#setIdle(queue, Math.min(dueAt, now + this.#options.safetyNetMs), dueAt);
      } else if (!this.#active.has(queue)) {
        this.#unknown.delete(queue);
        this.#idle.delete(queue);
        this.#active.add(queue);
      }
    }
    return claimed;
  }

  /** A NOTIFY or local wake for `queue`; undefined: every queue (a LISTEN (re)connect). */
  wake(queue?: string): void {
    this.#epoch += 1;
    for (const q of queue === undefined ? this.#options.queues : [queue]) {
      if (!this.#all.has(q)) continue;
      this.#wokenAt.set(q, this.#epoch);
      this.#triedEmpty.delete(q);
      if (this.#active.has(q)) continue;
      this.#idle.delete(q);
      this.#unknown.add(q);
    }
  }

  /**
   * A keyed row of `queue` that ended here has been deleted or moved (lease mode's keyFreed: after
   * its delivery ended and rowReturned): the key's next row may be claimable now. Unlike a wake, a
   * claim's report still counts (taken before the DELETE, it shows that row due now, as reports
   * leave the key's turn out; in a busy keyed drain nearly every claim is in flight when some key
   * is freed, and ignoring their reports kept the queues unknown, listed by every claim), but an
   * empty claim planned before it is not a try of the queue. The caller wakes the loop.
   */
  keyFreed(queue: string): void {
    if (!this.#all.has(queue)) return;
    this.#epoch += 1;
    this.#keyFreedAt.set(queue, this.#epoch);
    this.#triedEmpty.delete(queue);
  }

  /**
   * A row of `queue` held here came back to the table or ended (it may be ready again: a retry, a
   * release; or the queue's next row, delayed, is the one left). True when the claim loop may be
   * asleep without having listed the queue since: the queue was idle (it is listed again), or an
   * empty claim tried it (moreToTry counted on that try). The caller wakes the loop, as a NOTIFY
   * would (a trickle then costs two claims per message, as a poll over every queue did). While
   * claims take rows no queue counts as tried, so only a delivery in an idle queue wakes the loop.
   */
  rowReturned(queue: string): boolean {
    // Like a wake: a claim planned before the row came back may report the queue empty (its
    // snapshot predates the retry's commit), and that report must not idle the queue.
    this.#epoch += 1;
    this.#wokenAt.set(queue, this.#epoch);
    const tried = this.#triedEmpty.delete(queue);
    if (!this.#idle.delete(queue)) return tried;
    this.#unknown.add(queue);
    return true;
  }

  /**
   * After an empty claim: whether a queue that is not idle (active, unknown) has not been tried by
   * the empty claims since the last claim that took a row, so the loop claims again instead of
   * sleeping. Each empty claim lists every unknown queue and the active ones in turn, so a run of
   * empty claims ends within one round; a queue woken while such a claim was in flight (its report
   * ignored as older) is tried again, not slept on until the poll.
   */
  moreToTry(): boolean {
    for (const queue of this.#unknown) if (!this.#triedEmpty.has(queue)) return true;
    for (const queue of this.#active) if (!this.#triedEmpty.has(queue)) return true;
    return false;
  }

  /**
   * Milliseconds until the first row an idle queue's report saw is due (Infinity: none): a claim
   * loop with nothing to do sleeps no longer than this. Not until the safety net: an idle
   * subscription keeps the poll backoff (minPollIntervalMs up to maxPollIntervalMs), and the
   * claim after it lists every queue whose safety net passed. Call after plan().
   */
  msUntilDue(now: number): number {
    return Math.max(0, this.#nextDue - now);
  }

  /** Each queue's state, for tests and diagnostics. */
  states(): Map<string, 'unknown' | 'active' | 'idle'> {
    const out = new Map<string, 'unknown' | 'active' | 'idle'>();
    for (const q of this.#unknown) out.set(q, 'unknown');
    for (const q of this.#active) out.set(q, 'active');
    for (const q of this.#idle.keys()) out.set(q, 'idle');
    return out;
  }

  #setIdle(queue: string, until: number, dueAt: number): void {
    this.#unknown.delete(queue);
    this.#active.delete(queue);
    this.#idle.set(queue, { until, dueAt });
    if (until < this.#nextRecheck) this.#nextRecheck = until;
    if (dueAt < this.#nextDue) this.#nextDue = dueAt;
  }

  /** Idle queues whose time came become unknown; #nextRecheck and #nextDue move to the next ones. */
  #recheckDue(now: number): void {
    let next = Number.POSITIVE_INFINITY;
    let nextDue = Number.POSITIVE_INFINITY;
    for (const [queue, { until, dueAt }] of this.#idle) {
      if (until <= now) {
        this.#idle.delete(queue);
        this.#unknown.add(queue);
        this.#triedEmpty.delete(queue);
        continue;
      }
      if (until < next) next = until;
      if (dueAt < nextDue) nextDue = dueAt;
    }
    this.#nextRecheck = next;
    this.#nextDue = nextDue;
  }
}

/** The schedule of a subscription over several queues (either lease mode); one queue needs none. */
export function scheduleFor(options: {
  readonly queues: readonly string[];
  readonly fetchBatchSize: number;
  readonly minPollIntervalMs: number;
}): QueueSchedule | undefined {
  if (options.queues.length < 2) return undefined;
  return new QueueSchedule({
    queues: options.queues,
    maxActivePerClaim: Math.max(1, Math.ceil(options.fetchBatchSize / 2)),
    safetyNetMs: options.minPollIntervalMs,
  });
}
