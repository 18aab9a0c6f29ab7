/**
 * SIGKILL of random consumer processes of `txoutbox run` mid-batch, under load: the supervisor
 * restarts them, and their leased rows come back when the lease expires. Nothing may be lost;
 * every duplicate must follow a kill.
 */
import type { RunnerShape } from '../lib/runner-process.js';
import type { Scenario } from '../lib/scenario.js';
import { drainWithRunner } from './final-drain.js';

const SHAPE: RunnerShape = {
  processes: 3,
  concurrency: 4,
  fetchBatchSize: 10,
  leaseTtlMs: 3_000,
  gracefulTimeoutMs: 5_000,
  handler: 'chain',
  handlerDelayMs: 20,
};

export const killChildren: Scenario = {
  id: 'kill-children',
  title: 'SIGKILL of a random txoutbox run consumer (of 3) every 2 s under load, 6 times (3 in --quick)',
  quick: true,
  leaseTtlMs: SHAPE.leaseTtlMs,
  injects: ['SIGKILL'],
  timeoutMs: (quick) => (quick ? 150_000 : 240_000),
  async run(ctx) {
    ctx.step('starting the runner');
    const runner = await ctx.startRunner(SHAPE);
    ctx.load.start(40);
    await ctx.pause(2_000);
    const kills = ctx.quick ? 3 : 6;
    let killed = 0;
    for (let i = 1; i <= kills; i += 1) {
      ctx.step(`kill ${String(i)}/${String(kills)}`);
      const pids = runner.runningPids();
      const victim = pids[Math.floor(Math.random() * pids.length)];
      if (victim === undefined) {
        ctx.note(`kill ${String(i)}: no consumer was running to kill`);
      } else {
        ctx.faults.add('SIGKILL', `consumer pid ${String(victim)}`, true);
        runner.killConsumer(victim);
        killed += 1;
      }
      await ctx.pause(2_000);
    }
    if (killed === 0) ctx.finding(`none of the ${String(kills)} kills found a running consumer to kill`);
    ctx.step('waiting for the supervisor to restore every consumer');
    if (!(await runner.waitRunning(SHAPE.processes, 60_000)))
      ctx.finding('the supervisor had not restored 3 running consumers 60 s after the last kill');
    await drainWithRunner(ctx, runner);
  },
};
