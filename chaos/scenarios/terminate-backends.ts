/**
 * pg_terminate_backend of a random consumer backend every 100 ms under load (3 workers: the
 * default lease, row-lock mode, and a transactional subscription): claims, acks, retries, row-lock
 * batches mid-transaction, delivery transactions at their BEGIN, lock or COMMIT, LISTEN and the
 * handlers' own transactions all die at random. Nothing may be lost, every duplicate must follow a
 * termination (and none a transactional run that committed), no message may reach the DLQ for
 * it, and claims must be running again within RESUME_AFTER_TERMINATIONS_MS once it stops.
 */
import { HARNESS_APP } from '../lib/chaos-server.js';
import { TERMINATE_RANDOM_BACKEND } from '../lib/ledger-sql.js';
import type { Scenario } from '../lib/scenario.js';
import { RESUME_AFTER_TERMINATIONS_MS, ROW_LOCK_WORKER, TRANSACTIONAL_WORKER } from './bounds.js';
import { drainWithWorkers } from './final-drain.js';

export const terminateBackends: Scenario = {
  id: 'terminate-backends',
  title:
    'pg_terminate_backend of a random consumer backend every 100 ms for 20 s (8 s in --quick), 3 workers (lease, row-lock and transactional) under load',
  quick: true,
  leaseTtlMs: 5_000,
  injects: ['pg_terminate_backend'],
  timeoutMs: (quick) => (quick ? 150_000 : 240_000),
  async run(ctx) {
    const workers = [
      await ctx.startWorker(),
      await ctx.startWorker(ROW_LOCK_WORKER),
      await ctx.startWorker(TRANSACTIONAL_WORKER),
    ];
    ctx.load.start(40);
    await ctx.pause(2_000);
    ctx.step('pg_terminate_backend every 100 ms');
    const storm = ctx.faults.begin('pg_terminate_backend', 'a random consumer backend every 100 ms', true);
    const end = Date.now() + (ctx.quick ? 8_000 : 20_000);
    let terminated = 0;
    let tries = 0;
    let failed = 0;
    let lastError = '';
    while (Date.now() < end && !ctx.signal.aborted) {
      tries += 1;
      const result = await ctx.server.admin
        .query<{ n: number }>(TERMINATE_RANDOM_BACKEND, ['chaos', HARNESS_APP])
        .catch((error: unknown) => {
          // Counted, not thrown: one failed try does not end the storm; a storm of them is reported.
          failed += 1;
          lastError = error instanceof Error ? error.message : String(error);
          return undefined;
        });
      terminated += result?.rows[0]?.n ?? 0;
      await ctx.pause(100);
    }
    const over = storm.end();
    ctx.note(
      `${String(terminated)} backends terminated in ${String(tries)} tries` +
        (failed === 0 ? '' : `; ${String(failed)} tries failed (last: ${lastError})`),
    );
    if (terminated === 0)
      ctx.finding(
        `no backend was terminated in ${String(tries)} tries` + (failed === 0 ? '' : ` (${String(failed)} failed: ${lastError})`),
      );
    ctx.step('waiting for claims to resume');
    ctx.recordRecovery(
      'claims after the terminations',
      await ctx.claimResumed(workers, over, RESUME_AFTER_TERMINATIONS_MS + 15_000),
      RESUME_AFTER_TERMINATIONS_MS,
    );
    await ctx.pause(2_000);
    await drainWithWorkers(ctx, workers);
  },
};
