/**
 * The whole server frozen (SIGSTOP to the postmaster and every backend) while a worker drains a
 * backlog, and stop() called 0.5 s later: stop() must return within gracefulTimeoutMs + 2 s while
 * the server stays frozen (issue 13 item 6). The server is thawed 12 s after stop() was called.
 */
import { within } from '../lib/bounded.js';
import type { Scenario } from '../lib/scenario.js';
import { drainWithWorkers } from './final-drain.js';

export const serverFreezeStop: Scenario = {
  id: 'server-freeze-stop',
  title: 'SIGSTOP of the postmaster and every backend mid-drain, stop() called 0.5 s later, SIGCONT 12 s after that',
  quick: false,
  leaseTtlMs: 5_000,
  injects: ['server frozen'],
  timeoutMs: () => 240_000,
  async run(ctx) {
    ctx.step('a backlog');
    await ctx.load.preload(400);
    const worker = await ctx.startWorker({ handlerDelayMs: 20 });
    await ctx.pause(2_000);
    ctx.step('SIGSTOP of the server');
    const pids = ctx.server.freeze();
    const frozen = ctx.faults.begin('server frozen', `SIGSTOP to ${String(pids.length)} server processes`, true);
    if (pids.length === 0) ctx.finding('SIGSTOP found no server process to freeze: the stop() under test met a live server');
    await ctx.pause(500);
    ctx.step('stop() while the server is frozen');
    const stopping = ctx.stopWorker(worker, 'stop() while the server is frozen');
    await within(stopping, 12_000);
    ctx.step('SIGCONT');
    ctx.server.thaw();
    frozen.end();
    await stopping;
    await drainWithWorkers(ctx, []);
  },
};
