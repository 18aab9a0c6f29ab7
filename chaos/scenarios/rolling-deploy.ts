/**
 * Rolling deploys: a new `txoutbox run` comes up, then the old one gets SIGTERM and drains, under
 * load, five times. A graceful drain must neither lose nor repeat anything: its handlers finish and
 * their follow-ups publish, unstarted rows are released.
 */
import type { RunnerShape } from '../lib/runner-process.js';
import type { Scenario } from '../lib/scenario.js';
import { drainWithRunner } from './final-drain.js';

const SHAPE: RunnerShape = {
  processes: 2,
  concurrency: 4,
  fetchBatchSize: 10,
  leaseTtlMs: 5_000,
  gracefulTimeoutMs: 5_000,
  handler: 'chain',
  handlerDelayMs: 20,
};

export const rollingDeploy: Scenario = {
  id: 'rolling-deploy',
  title: 'txoutbox run (2 processes) replaced under load: new runner up, old one SIGTERMed; 5 times (2 in --quick)',
  quick: true,
  leaseTtlMs: SHAPE.leaseTtlMs,
  injects: ['SIGTERM'],
  timeoutMs: (quick) => (quick ? 150_000 : 360_000),
  async run(ctx) {
    const deploys = ctx.quick ? 2 : 5;
    ctx.step('starting the first runner');
    let runner = await ctx.startRunner(SHAPE);
    ctx.load.start(40);
    for (let i = 1; i <= deploys; i += 1) {
      await ctx.pause(3_000);
      ctx.step(`deploy ${String(i)}/${String(deploys)}: starting the new runner`);
      const next = await ctx.startRunner(SHAPE);
      ctx.step(`deploy ${String(i)}/${String(deploys)}: SIGTERM to the old runner`);
      await ctx.stopRunner(runner, `deploy ${String(i)}`);
      runner = next;
    }
    await ctx.pause(2_000);
    await drainWithRunner(ctx, runner);
  },
};
