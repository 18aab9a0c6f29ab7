/**
 * The end of every scenario: the load stops and a healthy consumer drains what is left, so that
 * whatever the faults did to a row (left leased, scheduled for a retry) has had its chance before
 * the accounting calls it stuck.
 */
import type { RunnerProcess } from '../lib/runner-process.js';
import type { ScenarioContext } from '../lib/scenario.js';
import type { WorkerProcess } from '../lib/worker-process.js';
import { DRAIN_MS } from './bounds.js';

async function drained(ctx: ScenarioContext): Promise<void> {
  await ctx.load.stop();
  ctx.step('final drain');
  if (!(await ctx.drain(DRAIN_MS))) ctx.note(`the final drain had not emptied the table after ${String(DRAIN_MS / 1000)} s`);
}

/** Drains with the workers given (started healthy, without a proxy, when none), then stops them. */
export async function drainWithWorkers(ctx: ScenarioContext, workers: readonly WorkerProcess[]): Promise<void> {
  const live = workers.filter((w) => w.alive);
  if (live.length === 0) live.push(await ctx.startWorker());
  await drained(ctx);
  for (const [i, worker] of live.entries()) await ctx.stopWorker(worker, `final stop of worker ${String(i + 1)}`);
}

/** Drains with the runner given, then stops it. */
export async function drainWithRunner(ctx: ScenarioContext, runner: RunnerProcess): Promise<void> {
  await drained(ctx);
  await ctx.stopRunner(runner, 'final stop');
}
