/**
 * PostgreSQL stopped with `pg_ctl stop -m immediate` in the middle of a drain (every backend dies
 * at once, no shutdown checkpoint) and started again 3 s later on the same data directory and
 * port. Claims must resume within RESUME_AFTER_RESTART_MS; nothing committed may be lost.
 */
import type { Scenario } from '../lib/scenario.js';
import { RESUME_AFTER_RESTART_MS, ROW_LOCK_WORKER, TRANSACTIONAL_WORKER } from './bounds.js';
import { drainWithWorkers } from './final-drain.js';

export const pgRestart: Scenario = {
  id: 'pg-restart',
  title:
    'pg_ctl stop -m immediate mid-drain (3 workers: lease, row-lock and transactional; 1,800-message backlog + load), restarted 3 s later on the same port',
  quick: false,
  leaseTtlMs: 5_000,
  injects: ['server stopped'],
  timeoutMs: () => 300_000,
  async run(ctx) {
    ctx.step('a backlog');
    await ctx.load.preload(600);
    const workers = [
      await ctx.startWorker(),
      await ctx.startWorker(ROW_LOCK_WORKER),
      await ctx.startWorker(TRANSACTIONAL_WORKER),
    ];
    ctx.load.start(20);
    await ctx.pause(2_000);
    ctx.step('pg_ctl stop -m immediate');
    const down = ctx.faults.begin('server stopped', 'pg_ctl stop -m immediate, down 3 s', true);
    await ctx.server.stopImmediate();
    await ctx.pause(3_000);
    ctx.step('starting the server again');
    await ctx.server.startAgain(60_000);
    const up = down.end();
    ctx.step('waiting for claims to resume');
    ctx.recordRecovery(
      'claims after the restart',
      await ctx.claimResumed(workers, up, RESUME_AFTER_RESTART_MS + 30_000),
      RESUME_AFTER_RESTART_MS,
    );
    await ctx.pause(3_000);
    await drainWithWorkers(ctx, workers);
  },
};
