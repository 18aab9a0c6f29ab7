/** How big each scale workload is: the full run (BENCHMARKS.md) and `--quick` (inside `npm test`). */

export interface ScaleSizes {
  readonly reps: number;
  /** a: the reference backlog, and the number of messages every backlog's drain is measured over. */
  readonly drainMeasured: number;
  /** a: the large backlog (rows ready at once). */
  readonly bigBacklog: number;
  /** a: rows scheduled in the future and rows in the DLQ table, next to `drainMeasured` ready rows. */
  readonly scheduledRows: number;
  readonly dlqRows: number;
  /** b: queue counts of one subscription over all of them; `drainMeasured` rows spread evenly. */
  readonly queueCounts: readonly number[];
  /** c: messages per W1 run and the producer counts. */
  readonly publishMessages: number;
  readonly producerCounts: readonly number[];
  /** d: the max-rate run the soak rate is derived from, the soak and its autovacuum-off variant. */
  readonly calibrateSeconds: number;
  readonly soakSeconds: number;
  readonly noVacuumSeconds: number;
  readonly sampleSeconds: number;
  readonly timeoutMs: number;
}

/** Every drain runs at concurrency 16, 100 rows per claim: W3 c16 of the main bench. */
export const DRAIN_CONCURRENCY = 16;
export const FETCH_BATCH_SIZE = 100;
/** The soak publishes at this share of the calibrated maximum rate. */
export const SOAK_LOAD = 0.8;
/** Producer connections of the soak (each publishes one message per transaction). */
export const SOAK_PRODUCERS = 8;

export const FULL_SCALE: ScaleSizes = {
  reps: 3,
  drainMeasured: 20_000,
  bigBacklog: 1_000_000,
  scheduledRows: 100_000,
  dlqRows: 100_000,
  queueCounts: [1, 10, 100, 1000],
  publishMessages: 5_000,
  producerCounts: [1, 8, 64],
  calibrateSeconds: 20,
  soakSeconds: 600,
  noVacuumSeconds: 180,
  sampleSeconds: 10,
  timeoutMs: 300_000,
};

export const QUICK_SCALE: ScaleSizes = {
  reps: 1,
  drainMeasured: 2_000,
  bigBacklog: 20_000,
  scheduledRows: 5_000,
  dlqRows: 5_000,
  queueCounts: [1, 1000],
  publishMessages: 200,
  producerCounts: [1, 8, 64],
  calibrateSeconds: 2,
  soakSeconds: 20,
  noVacuumSeconds: 6,
  sampleSeconds: 2,
  timeoutMs: 30_000,
};
