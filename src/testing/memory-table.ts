import type { MemoryRow } from './memory-row.js';

const bySeq = (a: MemoryRow, b: MemoryRow): number => a.seq - b.seq;

/** The claim's order: (next_attempt_at, id), as the ready index is walked. */
const byTurn = (a: MemoryRow, b: MemoryRow): number => a.nextAttemptAt - b.nextAttemptAt || a.seq - b.seq;

/**
 * The committed rows of the in-memory outbox, and the rules the real table's statements apply to
 * them (src/subscriber/sql.ts, src/producer/sql.ts), each named after the SQL it stands for.
 * Writes of open transactions are not here: they are staged in their TestTransaction and land at
 * its commit.
 */
export class MemoryTable {
  readonly #rows = new Map<number, MemoryRow>();
  /**
   * Rows an open transaction holds locked — deletes (cancelTimer) or updates (a cancelled keyed
   * timer's released rows) — by their holders: a claim skips them, as the claim's FOR UPDATE SKIP
   * LOCKED skips a row another transaction holds locked, and the holder itself is not stopped by
   * its own locks.
   */
  readonly #locked = new Map<number, Set<object>>();
  #lastSeq = 0;

  /** The next id, drawn at publish like the identity column's (a rolled-back publish leaves a gap). */
  drawSeq(): number {
    this.#lastSeq += 1;
    return this.#lastSeq;
  }

  /** Every committed row, in id order. */
  rows(): MemoryRow[] {
    return [...this.#rows.values()].sort(bySeq);
  }

  get(seq: number): MemoryRow | undefined {
    return this.#rows.get(seq);
  }

  insert(row: MemoryRow): void {
    this.#rows.set(row.seq, row);
  }

  delete(seq: number): MemoryRow | undefined {
    const row = this.#rows.get(seq);
    this.#rows.delete(seq);
    this.#locked.delete(seq);
    return row;
  }

  lock(seq: number, holder: object): void {
    const holders = this.#locked.get(seq);
    if (holders === undefined) this.#locked.set(seq, new Set([holder]));
    else holders.add(holder);
  }

  unlock(seq: number, holder: object): void {
    const holders = this.#locked.get(seq);
    holders?.delete(holder);
    if (holders?.size === 0) this.#locked.delete(seq);
  }

  /** Whether a transaction other than `holder` holds the row locked. */
  lockedByOther(seq: number, holder: object): boolean {
    const holders = this.#locked.get(seq);
    return holders !== undefined && [...holders].some((other) => other !== holder);
  }

  /**
   * keyTurn: a keyed row is claimable only when no older row of its key is left in the table
   * (leased, scheduled, delayed or locked alike): rows leave the table when they end, so the
   * oldest left is the one whose turn it is. Each key's head (its lowest id) is found in one pass
   * per claim: scanning the table again for every keyed row made a drain step quadratic, and a
   * drain over thousands of distinct keys took minutes.
   */
  #keyHeads(): Map<string, Map<string, number>> {
    const heads = new Map<string, Map<string, number>>();
    for (const row of this.#rows.values()) {
      if (row.orderingKey === null) continue;
      let ofQueue = heads.get(row.queue);
      if (ofQueue === undefined) heads.set(row.queue, (ofQueue = new Map<string, number>()));
      const head = ofQueue.get(row.orderingKey);
      if (head === undefined || row.seq < head) ofQueue.set(row.orderingKey, row.seq);
    }
    return heads;
  }

  /**
   * The ready branch of the claim: the first, in (next_attempt_at, id) order, unleased, unlocked,
   * due row of `queues` whose key's turn it is. Two passes, no sort: O(rows) per claim.
   */
  nextDue(queues: ReadonlySet<string>, nowMs: number): MemoryRow | undefined {
    const heads = this.#keyHeads();
    let next: MemoryRow | undefined;
    for (const row of this.#rows.values()) {
      if (!queues.has(row.queue) || row.acquiredAt !== null || this.#locked.has(row.seq) || row.nextAttemptAt > nowMs) continue;
      if (row.orderingKey !== null && heads.get(row.queue)?.get(row.orderingKey) !== row.seq) continue;
      if (next === undefined || byTurn(row, next) < 0) next = row;
    }
    return next;
  }

  /**
   * The earliest next_attempt_at after `afterMs` among unleased rows of `queues`: what
   * drain({ advanceClock: true }) moves the clock to. Rows due already but waiting for their key
   * do not count: time alone will not make them claimable.
   */
  nextScheduledAt(queues: ReadonlySet<string>, afterMs: number): number | undefined {
    let at: number | undefined;
    for (const row of this.#rows.values()) {
      if (!queues.has(row.queue) || row.acquiredAt !== null || this.#locked.has(row.seq)) continue;
      if (row.nextAttemptAt <= afterMs) continue;
      if (at === undefined || row.nextAttemptAt < at) at = row.nextAttemptAt;
    }
    return at;
  }

  /** Rows of `queues` still in the table. */
  pending(queues: ReadonlySet<string>): number {
    let count = 0;
    for (const row of this.#rows.values()) if (queues.has(row.queue)) count += 1;
    return count;
  }

  /** The claim's UPDATE: stamps the lease and counts the delivery. */
  claim(row: MemoryRow, nowMs: number): void {
    row.acquiredAt = nowMs;
    row.deliveriesCount += 1;
  }

  /**
   * The retry statement: reschedules the row by the clock, counts the failed run, keeps the error
   * it reported (a nack without one keeps the row's), clears the lease, and pushes its key's
   * waiting rows to its own next attempt (waitingRowsPushed).
   */
  retry(
    row: MemoryRow,
    write: {
      nextAttemptAt: number;
      firstAttemptAt: number;
      lastAttemptAt: number;
      exceptionType: string | null;
      exception: string | null;
    },
  ): void {
    row.nextAttemptAt = write.nextAttemptAt;
    row.attemptsCount += 1;
    row.firstAttemptAt ??= write.firstAttemptAt;
    row.lastAttemptAt = write.lastAttemptAt;
    row.lastExceptionType = write.exceptionType ?? row.lastExceptionType;
    row.lastException = write.exception ?? row.lastException;
    row.acquiredAt = null;
    if (row.orderingKey === null) return;
    for (const waiting of this.#rows.values()) {
      if (
        waiting.queue === row.queue &&
        waiting.orderingKey === row.orderingKey &&
        waiting.seq > row.seq &&
        waiting.acquiredAt === null &&
        waiting.nextAttemptAt < row.nextAttemptAt
      ) {
        waiting.nextAttemptAt = row.nextAttemptAt;
      }
    }
  }
}

/**
 * cancelTimer's `inherited` and `released`: a cancelled keyed timer gives its key's younger rows
 * that inherited its time their own times back, kept non-decreasing in id order (the latest own
 * time so far), never before now nor before the key's row before the timer. `seen` is what the
 * statement sees — the committed rows as the cancelling transaction has them, and its own inserts
 * — so a timer published and cancelled in one transaction releases the rows behind it too.
 * Returns each released row's new next_attempt_at, by id.
 */
export function releasedByCancel(cancelled: MemoryRow, seen: readonly MemoryRow[], nowMs: number): Map<number, number> {
  const released = new Map<number, number>();
  if (cancelled.orderingKey === null || cancelled.nextAttemptAt <= nowMs) return released;
  const sameKey = seen
    .filter((row) => row.queue === cancelled.queue && row.orderingKey === cancelled.orderingKey)
    .sort((a, b) => a.seq - b.seq);
  const beforeAt = sameKey.filter((row) => row.seq < cancelled.seq).at(-1)?.nextAttemptAt ?? nowMs;
  let ownAt = nowMs;
  for (const waiting of sameKey) {
    if (waiting.seq > cancelled.seq && waiting.acquiredAt === null && waiting.nextAttemptAt === cancelled.nextAttemptAt) {
      ownAt = Math.max(ownAt, waiting.activateAt ?? nowMs);
      released.set(waiting.seq, Math.max(nowMs, ownAt, beforeAt));
    }
  }
  return released;
}
