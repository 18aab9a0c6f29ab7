/**
 * SIGHUP reloads of `txoutbox run` under load:
 * 1. a changed consumer (concurrency 4 → 3): its processes are replaced one at a time;
 * 2. a handler module that throws on import: the rollout must stop at the first replacement that
 *    fails, keep the healthy processes and keep handling (issue 13 item 5);
 * 3. the working module again;
 * 4. SIGTERM 300 ms after a SIGHUP: the runner must exit within its budget and leave no consumer
 *    running (issue 13 item 4).
 */
import { until } from '../lib/bounded.js';
import { isAlive } from '../lib/processes.js';
import type { RunnerProcess, RunnerShape } from '../lib/runner-process.js';
import type { Scenario, ScenarioContext } from '../lib/scenario.js';
import { BROKEN_RELOAD_GAP_MS } from './bounds.js';
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

/** Rewrites the config and sends SIGHUP. */
function reload(ctx: ScenarioContext, runner: RunnerProcess, shape: RunnerShape, what: string): void {
  ctx.rewriteRunnerConfig(runner, shape);
  ctx.faults.add('SIGHUP', what, false);
  runner.signal('SIGHUP');
}

export const reloads: Scenario = {
  id: 'reloads',
  title: 'SIGHUP reloads under load: a changed consumer, a handler module that throws on import, SIGTERM mid-reload',
  quick: false,
  leaseTtlMs: SHAPE.leaseTtlMs,
  injects: ['SIGHUP'],
  timeoutMs: () => 420_000,
  async run(ctx) {
    ctx.step('starting the runner');
    const runner = await ctx.startRunner(SHAPE);
    ctx.load.start(30);
    await ctx.pause(3_000);

    ctx.step('SIGHUP: concurrency 4 → 3 (replace each process)');
    const first = runner.runningPids();
    reload(ctx, runner, { ...SHAPE, concurrency: 3 }, 'concurrency 4 → 3');
    const replaced = await until(
      () => {
        const now = runner.runningPids();
        return now.length >= SHAPE.processes && now.every((pid) => !first.includes(pid));
      },
      60_000,
      200,
    );
    if (!replaced) ctx.finding('a valid reload had not replaced both processes within 60 s');
    await ctx.pause(2_000);

    ctx.step('SIGHUP: a handler module that throws on import');
    const healthy = runner.runningPids();
    const brokenAt = Date.now();
    reload(ctx, runner, { ...SHAPE, handler: 'broken' }, 'handler module that throws on import');
    await ctx.pause(10_000);
    const survivors = healthy.filter(isAlive);
    if (survivors.length < healthy.length) {
      ctx.finding(
        `a reload to a handler module that cannot start took down ${String(healthy.length - survivors.length)} of ${String(healthy.length)} healthy processes`,
      );
    }
    const gap = await ctx.longestGap(brokenAt, Date.now());
    if (gap > BROKEN_RELOAD_GAP_MS) {
      ctx.finding(`handling stopped for ${(gap / 1000).toFixed(1)} s after a reload to a handler module that cannot start`);
    }
    const why = runner.logs.some(
      (l) => (l.level === 'error' || l.level === 'warn') && typeof l.msg === 'string' && /reload|rollout/i.test(l.msg),
    );
    if (!why) ctx.note('no warning or error log line about the reload or rollout after the broken module');

    ctx.step('SIGHUP: the working module again');
    reload(ctx, runner, SHAPE, 'the working module again');
    if (!(await runner.waitRunning(SHAPE.processes, 90_000))) {
      ctx.finding('after restoring the working module, 2 consumers were not running within 90 s');
    }
    await ctx.pause(3_000);

    ctx.step('SIGHUP, then SIGTERM 300 ms later');
    reload(ctx, runner, { ...SHAPE, concurrency: 3 }, 'concurrency 4 → 3, interrupted');
    await ctx.pause(300);
    await ctx.stopRunner(runner, 'SIGTERM during a reload');

    ctx.step('a fresh runner');
    const last = await ctx.startRunner(SHAPE);
    await drainWithRunner(ctx, last);
  },
};
