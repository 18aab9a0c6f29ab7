/**
 * The bounds the scenarios hold the product to, in one place (RELIABILITY.md states them).
 */

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
