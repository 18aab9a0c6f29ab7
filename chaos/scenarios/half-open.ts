/**
 * Every open connection of three workers (the second in row-lock mode: a batch's transaction, its
 * rows locked, is cut off from its client with the server none the wiser; the third transactional,
 * its deliveries' transactions likewise) dropped half-open (the
 * proxy stops forwarding them for good, with no FIN or RST; new connections work): the workers must
 * notice and claim again through new connections within RESUME_AFTER_HALF_OPEN_MS, and while it has not, ping() must not say it is
 * healthy (issue 13 item 7). Then dropped again and stop() called: it must return within
 * gracefulTimeoutMs + 2 s (item 6c).
 */
import type { Scenario } from '../lib/scenario.js';
import { RESUME_AFTER_HALF_OPEN_MS, ROW_LOCK_WORKER, TRANSACTIONAL_WORKER } from './bounds.js';
import { drainWithWorkers } from './final-drain.js';

export const halfOpen: Scenario = {
  id: 'half-open',
  title:
    'every connection of 3 workers (lease, row-lock and transactional) dropped half-open (no FIN/RST), twice; the second time stop() is called',
  quick: false,
  leaseTtlMs: 5_000,
  injects: ['half-open'],
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

    ctx.step('every open connection dropped half-open');
    const dropped = proxy.dropHalfOpen();
    const drop = ctx.faults.begin('half-open', `${String(dropped)} worker connections`, true);
    if (dropped === 0) ctx.finding('the first half-open drop found no worker connection to drop');
    ctx.step('waiting for claims through new connections');
    const resumed = await ctx.claimResumed(workers, drop.fault.start, RESUME_AFTER_HALF_OPEN_MS);
    ctx.recordRecovery('claims after a half-open drop', resumed, RESUME_AFTER_HALF_OPEN_MS);
    if (resumed === null) {
      for (const [i, worker] of workers.entries()) {
        const ping = await worker.ping(10_000);
        const which = `worker ${String(i + 1)}'s ping()`;
        if (ping === undefined) ctx.finding(`${which} did not answer within 10 s while claims were stalled`);
        else if (ping.ok) {
          ctx.finding(`${which} answered true while no claim had completed for ${String(RESUME_AFTER_HALF_OPEN_MS / 1000)} s`);
        } else ctx.note(`${which} answered false while claims were stalled`);
      }
    }
    drop.end();
    await ctx.pause(2_000);

    ctx.step('dropped half-open again, then stop()');
    const droppedAgain = proxy.dropHalfOpen();
    const again = ctx.faults.begin('half-open', `${String(droppedAgain)} worker connections, then stop()`, true);
    if (droppedAgain === 0)
      ctx.finding('the second half-open drop found no worker connection to drop: stop() met a healthy network');
    await ctx.pause(500);
    await Promise.all(
      workers.map((worker, i) => ctx.stopWorker(worker, `stop() of worker ${String(i + 1)} on half-open connections`)),
    );
    again.end();

    await drainWithWorkers(ctx, []);
  },
};
