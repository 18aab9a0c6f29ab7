/**
 * Rolling deploys of an application process with one Outbox that both consumes and publishes (the
 * worker): a new process comes up, the old one's stop() is called while its handlers run (100 ms
 * each, 8 at a time, so a drain always has work in flight), five times. Handlers running during the
 * drain publish their follow-ups through the Outbox being stopped: refusing them (issue 13 item 2)
 * turns every deploy into failed handler runs (OutboxStoppedError), spent retries or DLQ rows.
 */
import type { Scenario, WorkerOptions } from '../lib/scenario.js';
import { drainWithWorkers } from './final-drain.js';

const BUSY: WorkerOptions = { handlerDelayMs: 100, subscribe: { concurrency: 8, fetchBatchSize: 10 } };

export const appDeploy: Scenario = {
  id: 'app-deploy',
  title:
    'an application process (one Outbox consuming and publishing) replaced under load: new one up, stop() on the old; 5 times (2 in --quick)',
  quick: true,
  leaseTtlMs: 5_000,
  injects: ['stop()'],
  timeoutMs: (quick) => (quick ? 120_000 : 240_000),
  async run(ctx) {
    const deploys = ctx.quick ? 2 : 5;
    let worker = await ctx.startWorker(BUSY);
    ctx.load.start(40);
    for (let i = 1; i <= deploys; i += 1) {
      await ctx.pause(2_500);
      ctx.step(`deploy ${String(i)}/${String(deploys)}: starting the new process`);
      const next = await ctx.startWorker(BUSY);
      ctx.step(`deploy ${String(i)}/${String(deploys)}: stop() on the old one`);
      await ctx.stopWorker(worker, `deploy ${String(i)}`);
      worker = next;
    }
    await ctx.pause(2_000);
    await drainWithWorkers(ctx, [worker]);
  },
};
