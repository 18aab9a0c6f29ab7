/**
 * What an operator sees of a queue (`outbox.status()`, `txoutbox status`, the dashboard): its
 * depth by state, its DLQ, how old its oldest ready row is, whether it is paused, and what the
 * subscribers of every process did with it minute by minute. See architecture/operations.md.
 */

/** One minute of one queue's outcomes, summed over every process that consumes it. */
export interface ThroughputMinute {
  /** The minute's start (UTC, whole minute). */
  readonly minute: Date;
  /** Rows acked (deleted after their handler returned). */
  readonly handled: number;
  /** Handler runs that ended in a retry (the row was rescheduled). */
  readonly retried: number;
  /** Rows ended terminally (moved to the DLQ, or deleted when the DLQ is off). */
  readonly deadLettered: number;
}

export interface QueueStatus {
  readonly queue: string;
  /** Unleased and due: a claim would take them now (as the `queue_messages{state}` metric). */
  readonly ready: number;
  /** Unleased, due later (delayed publishes, retries in backoff). */
  readonly scheduled: number;
  /** Held by a subscriber, including expired leases waiting to be reclaimed. */
  readonly leased: number;
  /** Rows of this queue in the DLQ; undefined when the Outbox has no DLQ. */
  readonly dlq: number | undefined;
  /** Which counts are planner estimates (above the exact-count cap). */
  readonly estimated: Readonly<Record<'ready' | 'scheduled' | 'leased' | 'dlq', boolean>>;
  /** Milliseconds since the oldest ready row became due; 0 when none is ready. */
  readonly oldestReadyAgeMs: number;
  readonly paused: boolean;
  /** When the pause began; null when not paused. */
  readonly pausedAt: Date | null;
  /** The reason given to pause(); null when none was or the queue is not paused. */
  readonly pauseReason: string | null;
  /** The last `minutes` whole minutes plus the current one, oldest first, zero-filled. */
  readonly throughput: readonly ThroughputMinute[];
  /** Rows handled per minute, averaged over the last 5 minutes (the current one pro rata). */
  readonly handledPerMinute: number;
}

export interface QueueStatusReport {
  /** The database's clock when the snapshot was read. */
  readonly at: Date;
  /**
   * Every queue that has pending rows, dead letters, a pause, or throughput in the window, by
   * name (at most `maxQueues`).
   */
  readonly queues: readonly QueueStatus[];
}

export interface StatusOptions {
  /** Only these queues (reported even when empty). @default every queue with something to show */
  readonly queues?: readonly string[];
  /** Minutes of throughput history per queue. @default 15, at most 60 */
  readonly minutes?: number;
  /** At most this many queues: the paused ones first, then the oldest ready row first. @default 500 */
  readonly maxQueues?: number;
}

export interface PauseOptions {
  /** Why, for the next operator: shown by status and the dashboard. At most 500 characters. */
  readonly reason?: string;
}

/** A queue's pause state after pause() or resume(). */
export interface QueuePauseState {
  readonly queue: string;
  readonly paused: boolean;
  readonly pausedAt: Date | null;
  readonly reason: string | null;
  /** False when the queue was already in the asked state (the calls are idempotent). */
  readonly changed: boolean;
}
