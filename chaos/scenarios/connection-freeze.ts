/**
 * Every connection of three workers (the second in row-lock mode, its batches' transactions open
 * through the freeze; the third transactional, its deliveries' transactions too) frozen for 10 s (a TCP proxy that stops forwarding without closing
 * anything), then restored: claims must resume within RESUME_AFTER_FREEZE_MS. Then frozen again
 * with stop() called 1 s in: stop() must return within gracefulTimeoutMs + 2 s while the freeze
 * lasts (issue 13 item 6).
 */
import { within } from '../lib/bounded.js';
import type { Scenario } from '../lib/scenario.js';
import { RESUME_AFTER_FREEZE_MS, ROW_LOCK_WORKER, TRANSACTIONAL_WORKER } from './bounds.js';
import { drainWithWorkers } from './final-drain.js';

export const connectionFreeze: Scenario = {
  id: 'connection-freeze',
  title:
    'every connection of 3 workers (lease, row-lock and transactional) frozen 10 s (proxy stops forwarding), restored; then frozen again with stop() called 1 s in',
  quick: false,
  leaseTtlMs: 5_000,
  injects: ['frozen'],
  timeoutMs: () => 300_000,
  async run(ctx) {
    const proxy = await ctx.startProxy();
    const databaseUrl = proxy.via(ctx.databaseUrl);
    const workers = [
      await ctx.startWorker({ databaseUrl }),
      await ctx.startWorker({ ...ROW_LOCK_WORKER, databaseUrl }),
      await ctx.startWorker({ ...TRANSACTIONAL_WORKER, databaseUrl }),
    ];
    ctx.load.start(30);
    await ctx.pause(3_000);

    ctx.step('every connection frozen for 10 s');
    const freeze = ctx.faults.begin('frozen', `all ${String(proxy.connections)} worker connections, 10 s`, true);
    proxy.freeze();
    await ctx.pause(10_000);
    proxy.thaw();
    const restored = freeze.end();
    ctx.step('waiting for claims to resume');
    ctx.recordRecovery(
      'claims after a 10 s freeze',
      await ctx.claimResumed(workers, restored, RESUME_AFTER_FREEZE_MS + 20_000),
      RESUME_AFTER_FREEZE_MS,
    );
    await ctx.pause(3_000);

    ctx.step('stop() while every connection is frozen');
    const second = ctx.faults.begin('frozen', 'all worker connections, during stop()', true);
    proxy.freeze();
    await ctx.pause(1_000);
    const stopping = Promise.all(
      workers.map((worker, i) => ctx.stopWorker(worker, `stop() of worker ${String(i + 1)} during a freeze`)),
    );
    // The freeze is lifted after 10 s whatever stop() does: a stop() that only returns then is over budget.
    await within(stopping, 10_000);
    proxy.thaw();
    second.end();
    await stopping;

    await drainWithWorkers(ctx, []);
  },
};
