import { errorMessage } from '../errors.js';
import { dueInMs } from '../producer/sql.js';
import type { Logger } from '../util/logger.js';
import type { Statement } from '../util/statement.js';
import type { StatementRunner } from '../util/statement-runner.js';
import { idlePollDelayMs } from './claim-pacing.js';
import type { QueueSchedule } from './queue-schedule.js';

/** The lease's length, as claimText's expired branch reads $2. */
const LEASE_TTL = `$2::double precision * interval '1 millisecond'`;
/** The time the empty claim before the probe was sent, by the database's clock (within a round trip). */
const CLAIMED_AT = `now() - $4::double precision * interval '1 millisecond'`;

/**
 * $1 queues (text[]), $2 leaseTtlMs, $3 the ids this subscription holds (bigint[]), $4 the ms since
 * the empty claim before it was sent. The next moment a row of the queues that are not paused turns
 * claimable without anyone writing it, as (queue, in_ms) by the database's clock (0: it did since
 * that claim), or no row: its first delayed row comes due (a retry, a delayed publish), or the first
 * lease held elsewhere runs out, as this subscription's claim judges leases ($2). From the claim on,
 * not from now: a row that turned claimable in between is claimed at once, not a poll later. One
 * probe per queue and index: <t>_ready_idx from its first row not due at the claim, <t>_lease_idx
 * from its first lease not expired at the claim (an older one was claimable already, or is held
 * here). Leases this subscription holds are its own to end. An `infinity` next_attempt_at never
 * comes due, and its arithmetic would fail the statement (before PostgreSQL 17).
 */
export function nextClaimableText(table: string, paused: string): string {
  const listed = (alias: string, walk: string) => `SELECT q.queue, ${alias}.at FROM unnest($1::text[]) AS q(queue)
  CROSS JOIN LATERAL (
    ${walk}
    LIMIT 1
  ) AS ${alias}
  WHERE NOT EXISTS (SELECT 1 FROM ${paused} AS p WHERE p.queue = q.queue)`;
  return `SELECT e.queue, ${dueInMs('e.at')} AS in_ms FROM (
  ${listed(
    'r',
    `SELECT o.next_attempt_at AS at FROM ${table} AS o
    WHERE o.acquired_token IS NULL AND o.queue = q.queue AND o.next_attempt_at > ${CLAIMED_AT} AND o.next_attempt_at < 'infinity'
    ORDER BY o.next_attempt_at`,
  )}
  UNION ALL
  ${listed(
    'l',
    `SELECT o.acquired_at + ${LEASE_TTL} AS at FROM ${table} AS o
    WHERE o.acquired_token IS NOT NULL AND o.queue = q.queue AND o.acquired_at >= ${CLAIMED_AT} - ${LEASE_TTL}
      AND o.id <> ALL($3::bigint[])
    ORDER BY o.acquired_at`,
  )}
) AS e
ORDER BY e.at
LIMIT 1`;
}

/**
 * Woken this much after the probed time. A timer may fire up to a millisecond before its time by the
 * database's clock, and a claim that early finds the row not yet claimable. And a row something
 * else wakes the loop for (a retry's alarm, an announced delayed publish: due-alarm.ts, at most 2 ×
 * its 10 ms coalescing plus 2 ms and its drift late) is claimed before this timer fires, which then
 * finds that claim and wakes nobody (one queue; see #arm).
 */
const MARGIN_MS = 25;

/**
 * No probe before a sleep this short or shorter (a consumer configured to poll every few ms): it
 * could save at most half a second, and an idle loop would send two statements per poll, not one.
 */
const MIN_PROBED_SLEEP_MS = 500;

/**
 * At most one probe per this long, or per PROBE_MS_PER_QUEUE for each queue of a subscription over
 * many (a probe reads two indexes per queue: 14 ms for 1,000 queues), but for the one after a wake
 * by its timer: a consumer that NOTIFYs keep waking sleeps often (its claims sometimes empty, the
 * row taken by the claim before), and its rows are announced.
 */
const PROBE_INTERVAL_MS = 1_000;
const PROBE_MS_PER_QUEUE = 10;

/**
 * The empty claim before the probe is taken as sent this much earlier than the loop saw it go: its
 * time is read before a pool connection is found for it (and, in row-lock mode, a claim the last
 * batch's COMMIT carried went before). A row that turned claimable in that gap is woken for at once
 * rather than left to the poll; one that the claim saw but could not take (locked) costs one claim.
 */
const CLAIM_SKEW_MS = 50;

export interface IdleProbeDeps {
  readonly db: StatementRunner;
  readonly statement: Statement;
  readonly options: {
    readonly name: string;
    readonly queues: readonly string[];
    readonly leaseTtlMs: number;
    readonly minPollIntervalMs: number;
    readonly maxPollIntervalMs: number;
  };
  /** A subscription over several queues: its rows' due times its claims' reports saw. */
  readonly schedule: QueueSchedule | undefined;
  /** The ids the subscription holds ($3), as a bigint[] literal; '{}' in row-lock mode (it writes no lease). */
  readonly held: () => string;
  /** What the subscription does for a NOTIFY of `queue`: lists it in the next claim and wakes the loop. */
  readonly wake: (queue: string) => void;
  readonly logger: Logger;
}

/**
 * An idle claim loop's blind spot: its poll backs off to maxPollIntervalMs (10 s by default), and
 * rows that turn claimable without anyone writing them are announced by nobody: a lease held
 * elsewhere runs out (its process died, or its handler outlived the lease), and a delayed row nobody
 * announced here (a retry written by a process that died, any delayed row of a `listen: false`
 * consumer) comes due. From its second empty claim in a row, before a sleep longer than half a
 * second, at most once a second (PROBE_INTERVAL_MS), and over one queue again after each wake for
 * such a row, a loop asks the database when the next such row turns claimable and wakes its queue
 * then, so a row known at the last probe runs on time, not up to a poll later. None while claims keep finding rows
 * (a drain does not sleep). A lease a live process holds looks like one that will run out: an idle
 * loop may wake for it once, if no later probe moved the timer. Rows written after the probe are
 * found at the next probe or poll, as before, or by their NOTIFY.
 */
export class IdleProbe {
  readonly #deps: IdleProbeDeps;
  readonly #intervalMs: number;
  #timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires (performance.now()). */
  #firesAt = Number.POSITIVE_INFINITY;
  /** When the loop last sent a claim (performance.now()). */
  #claimedAt = Number.NEGATIVE_INFINITY;
  /** Probes failed in a row (the streak is logged once, at its first). */
  #failures = 0;
  #stopped = false;
  /**
   * The timer woke the loop since the last probe: the next sleep probes whatever its cap and empty
   * claims, for the row that turns claimable next (a row due soon after the one woken for would
   * otherwise wait for the sleep after it, up to minPollIntervalMs).
   */
  #woken = false;
  /** When the last probe was sent (performance.now()). */
  #probedAt = Number.NEGATIVE_INFINITY;

  constructor(deps: IdleProbeDeps) {
    this.#deps = deps;
    this.#intervalMs = Math.max(PROBE_INTERVAL_MS, deps.options.queues.length * PROBE_MS_PER_QUEUE);
  }

  /**
   * A claim of the subscription's queue was sent at `at` (performance.now()): a timer of a single
   * queue's probe that fires after it has nothing left to wake for (a retry's alarm or a NOTIFY
   * woke the loop for the same row).
   */
  claimed(at: number): void {
    this.#claimedAt = at;
  }

  /**
   * How long the loop sleeps after `idleFetches` empty claims in a row, the last sent at `claimedAt`
   * (performance.now()): its poll's backoff, or less when its schedule knows a row due sooner. Before
   * a sleep longer than MIN_PROBED_SLEEP_MS, a probe (see above); what it finds wakes the row's
   * queue (a timer), cutting the sleep short or, beyond it, ending a later one.
   */
  async sleepMs(idleFetches: number, claimedAt: number): Promise<number> {
    const { options, schedule } = this.#deps;
    const now = performance.now();
    const dueMs = schedule?.msUntilDue(now) ?? Number.POSITIVE_INFINITY;
    const sleepMs = Math.max(1, Math.min(idlePollDelayMs(idleFetches, options), dueMs));
    const due = this.#woken || (idleFetches >= 2 && now - this.#probedAt >= this.#intervalMs);
    if (due && sleepMs > MIN_PROBED_SLEEP_MS) await this.#probe(claimedAt);
    return sleepMs;
  }

  async #probe(claimedAt: number): Promise<void> {
    const { db, statement, options, held, logger } = this.#deps;
    let next: { queue: string; in_ms: number | string } | undefined;
    this.#woken = false;
    this.#probedAt = performance.now();
    try {
      const sinceClaimMs = performance.now() - claimedAt + CLAIM_SKEW_MS;
      const { rows } = await db.run<{ queue: string; in_ms: number | string }>(statement, [
        options.queues,
        options.leaseTtlMs,
        held(),
        sinceClaimMs,
      ]);
      next = rows[0];
      this.#failures = 0;
    } catch (error) {
      this.#failures += 1;
      if (this.#failures === 1) {
        logger.warn(
          { subscriber: options.name, err: errorMessage(error) },
          'could not ask when the next delayed row or lease held elsewhere turns claimable: those run at the next poll until it succeeds',
        );
      }
      return;
    }
    clearTimeout(this.#timer);
    this.#timer = undefined;
    // A number from node-postgres, unless the application parses float8 otherwise.
    const inMs = Number(next?.in_ms) + MARGIN_MS;
    // Past the longest poll (a row due in a month: Node fires a timer past 24.8 days at once, and
    // the loop would claim and probe without end), a later probe finds it again.
    if (next === undefined || this.#stopped || !(inMs <= options.maxPollIntervalMs)) return;
    this.#arm(next.queue, inMs);
  }

  /**
   * One timer: the latest probe's, for the earliest time it knows (a later one is found again by the
   * next probe). Beyond the sleep ahead too: the next probe may not come before it (the cap).
   */
  #arm(queue: string, inMs: number): void {
    this.#firesAt = performance.now() + inMs;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      // One queue: a claim sent since the row turned claimable took it, or found it taken. Over
      // several, a claim may not have listed its queue: woken. Only one queue's loop probes again
      // at once after the wake: over several, a probe per row (two index reads per queue) would
      // cost more than the schedule's safety net (minPollIntervalMs) it saves.
      const single = this.#deps.schedule === undefined;
      if (single && this.#claimedAt >= this.#firesAt - MARGIN_MS) return;
      this.#woken = single;
      this.#deps.wake(queue);
    }, inMs);
    this.#timer.unref();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
