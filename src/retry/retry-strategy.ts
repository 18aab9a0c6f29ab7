/** What a retry strategy is told about a failed handler run. */
export interface RetryContext {
  /** Handler runs so far, this failed one included (1 after the first failure). */
  readonly attempt: number;
  /** When the first handler run of this message started. */
  readonly firstAttemptAt: Date;
  /** When this (failed) run started. */
  readonly lastAttemptAt: Date;
  /** What the handler threw (or the reason given to ctx.nack()). */
  readonly error: unknown;
}

/**
 * Decides when a failed message runs again: a delay in milliseconds (applied by the database
 * clock from the moment of the failure's write, `clock_timestamp() + delay`), or null to end it as `retry_terminal` (into the DLQ when it is on).
 * A strategy that throws or returns something else also ends the row as `retry_terminal`; it never
 * stops the subscriber.
 */
export interface RetryStrategy {
  nextDelayMs(context: RetryContext): number | null;
}

/** The longest delay any strategy schedules: far enough to mean "later", short of date overflow. */
export const MAX_DELAY_MS = 365 * 24 * 60 * 60 * 1000;
