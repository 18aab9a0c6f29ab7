/**
 * The bounds the scenarios hold the product to, in one place (RELIABILITY.md states them).
 */

/**
 * The second worker of the scenarios that run two: `lease: 'row-lock'` (a transaction holds the
 * batch's rows locked, nothing is written until the outcomes), so that mode meets the same faults
 * as the default lease beside it.
 */
export const ROW_LOCK_WORKER = { subscribe: { lease: 'row-lock' } } as const;

/**
 * A third worker where a scenario runs one: `transactional: true` (the handler's ledger row and
 * follow-up commit with the ack in the delivery's transaction; the accounting holds its runs to
 * effects once). Under `reject_on_error`: every failure a fault causes there is the database's
 * (its connections cut, frozen or terminated, the server restarted), which must be retried, not
 * dead-lettered; only the poison rows' own `ctx.reject()` may reach the DLQ. Its pool: one
 * connection per running handler (concurrency 4) plus claims and acks.
 */
export const TRANSACTIONAL_WORKER = {
  poolSize: 6,
  subscribe: { transactional: true, ackPolicy: 'reject_on_error' },
} as const;

/** The final drain: rows retried with the default backoff (1 s, 2 s, 4 s, … ±20 %) included. */
export const DRAIN_MS = 120_000;

/** After a fault is lifted, every consumer completes a claim within this long. */
export const RESUME_AFTER_RESTART_MS = 15_000;
export const RESUME_AFTER_FREEZE_MS = 10_000;
/** A connection that went silent must be given up on and replaced: a claim completes within this long. */
export const RESUME_AFTER_HALF_OPEN_MS = 30_000;
/** The claim loop's error backoff is capped at 30 s (MAX_ERROR_BACKOFF_MS); plus a claim's own time. */
export const RESUME_AFTER_TERMINATIONS_MS = 35_000;
/** How long handling may pause while a reload to a broken handler module is rolled out. */
export const BROKEN_RELOAD_GAP_MS = 3_000;

/** The relay sinks' longest pause between reconnect attempts (Redis: doubling, capped at 5 s; NATS: 1 s). */
export const SINK_RECONNECT_MAX_MS = 5_000;

/**
 * After a broker was down `outageMs`, every row committed before it came back is confirmed within
 * this long. The relay retries a failed send with backoff from 1 s, doubling (±20 %), never giving
 * up (RELAY_DEFAULTS): a row failing from the start of the outage makes its next attempt at most
 * 1.2 × (outage + 1 s) after the restart; if that attempt comes before the sink has reconnected
 * (within SINK_RECONNECT_MAX_MS) it fails once more and waits twice as long. Plus 2 s for the claims
 * and sends of the backlog. 2 s down: 14.2 s; 8 s down: 28.6 s.
 */
export function relayRecoveryBoundMs(outageMs: number): number {
  return SINK_RECONNECT_MAX_MS + 2 * 1.2 * (outageMs + 1_000) + 2_000;
}
