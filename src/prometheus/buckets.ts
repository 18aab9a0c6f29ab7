/**
 * Default histogram buckets. The first two are FastStream's (faststream/prometheus/container.py),
 * so `prefix: 'faststream'` yields the very `le` values its dashboards' quantile panels expect.
 */

/** prometheus_client's default buckets, which FastStream uses for every duration. */
export const DURATION_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

/** FastStream's DEFAULT_SIZE_BUCKETS: 16 B … 16 MiB in powers of four. */
export const SIZE_BUCKETS: readonly number[] = [4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24].map((exponent) => 2 ** exponent);

/**
 * Message age (created → dispatched): from "picked up at once" to the hour a backlog or a long
 * activation delay can reach; rejected's _AGE_BUCKETS with a 10 ms floor, because an outbox
 * woken by NOTIFY dispatches in milliseconds.
 */
export const AGE_BUCKETS: readonly number[] = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600];

/**
 * Rows per relay batch (the sends a relay started in one event-loop turn): powers of two from a
 * lone row up to 1,024. A batch is at most the relay's `concurrency` (default 64: no more sends run
 * at once), so the usual `concurrency` values (16, 32, 64) are bucket bounds and a batch that
 * filled every slot lands exactly on one.
 */
export const BATCH_BUCKETS: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
