/**
 * Slow handlers with a lease shorter than buffer × handler time: concurrency 1, fetchBatchSize 10,
 * a 250 ms handler (a full buffer waits 2.5 s) and a 1.5 s lease, maxDeliveries 3, two workers. No
 * fault at all: every duplicate is unexplained and every DLQ row unexpected. Buffered rows must not
 * outlive their lease into a redelivery, nor reach maxDeliveries without running (issue 13 item 1).
 */
import type { Scenario } from '../lib/scenario.js';
import { drainWithWorkers } from './final-drain.js';

export const slowHandlers: Scenario = {
  id: 'slow-handlers',
  title:
    'no fault: 250 ms handlers, concurrency 1, fetchBatchSize 10, lease 1.5 s, maxDeliveries 3; 2 workers, 240-message backlog (120 in --quick)',
  quick: true,
  leaseTtlMs: 1_500,
  // No fault by design: every duplicate and DLQ row is the product's.
  injects: [],
  timeoutMs: () => 240_000,
  async run(ctx) {
    ctx.step('a backlog');
    await ctx.load.preload(ctx.quick ? 40 : 80);
    const slow = {
      handlerDelayMs: 250,
      subscribe: { concurrency: 1, fetchBatchSize: 10, leaseTtlMs: 1_500, maxDeliveries: 3 },
    };
    const workers = [await ctx.startWorker(slow), await ctx.startWorker(slow)];
    await drainWithWorkers(ctx, workers);
  },
};
