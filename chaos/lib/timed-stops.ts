/**
 * Stopping a consumer is itself under test: each stop is timed against its budget, and one that
 * overruns it by HANG_GRACE_MS is called hung and killed (the kill is a fault: what it abandons may
 * be redelivered).
 */
import { within } from './bounded.js';
import { type RunnerProcess, stopOutcome } from './runner-process.js';
import type { Recorder } from './scenario-record.js';
import type { WorkerProcess } from './worker-process.js';

/** stop() may take gracefulTimeoutMs plus this (closing connections, the last ack flush). */
export const STOP_SLACK_MS = 2_000;
/** The runner SIGKILLs what has not drained this long after gracefulTimeoutMs (architecture/runner.md). */
export const RUNNER_KILL_AFTER_MS = 5_000;
/** Past its budget, how much longer a stop is waited for before it is called hung and killed. */
export const HANG_GRACE_MS = 15_000;

/** How long after a runner's exit its last output lines are waited for (a stray consumer holds the pipe open). */
const OUTPUT_READ_MS = 2_000;

const s = (ms: number): string => String(ms / 1000);

/** SIGTERM to `txoutbox run`, timed to its exit; then no consumer of its group may be left. */
export async function stopRunner(
  record: Recorder,
  runner: RunnerProcess,
  gracefulTimeoutMs: number,
  what: string,
): Promise<void> {
  const budgetMs = gracefulTimeoutMs + RUNNER_KILL_AFTER_MS;
  const t0 = performance.now();
  record.faults.add('SIGTERM', what, false);
  runner.signal('SIGTERM');
  const exit = await runner.waitExit(budgetMs + HANG_GRACE_MS);
  if (exit === undefined) {
    record.stop({ what, ms: null, budgetMs });
    const alive = runner
      .consumersInGroup()
      .map((p) => p.pid)
      .join(', ');
    record.finding(
      `${what}: txoutbox run had not exited ${s(budgetMs + HANG_GRACE_MS)} s after SIGTERM (budget ${s(budgetMs)} s); ` +
        `consumer pids alive: ${alive || 'none'}`,
    );
    runner.signal('SIGTERM');
    const second = await runner.waitExit(3_000);
    record.note(`${what}: a second SIGTERM ${second === undefined ? 'was ignored too' : 'made it exit'}`);
    if (second === undefined) {
      record.faults.add('SIGKILL', `${what}: the runner's process group`, true);
      runner.kill();
      await runner.waitExit(5_000);
    }
  } else {
    const ms = performance.now() - t0;
    record.stop({ what, ms, budgetMs });
    if (ms > budgetMs)
      record.finding(`${what}: txoutbox run took ${(ms / 1000).toFixed(1)} s to exit after SIGTERM (budget ${s(budgetMs)} s)`);
    // Its last lines (`runner stopped`) may still be in the pipe when the exit is reported.
    await runner.outputRead(OUTPUT_READ_MS);
    const outcome = stopOutcome(exit, runner.logs);
    if (outcome.kind === 'escalated') {
      // The runner's own escalation: consumers that did not drain in time were SIGKILLed.
      record.faults.add('forced exit', `${what}: exit ${JSON.stringify(exit)}`, true);
      record.note(`${what}: txoutbox run exited with ${JSON.stringify(exit)} after SIGKILLing consumers that had not drained`);
    } else if (outcome.kind === 'failed') {
      // Not the escalation (its exit 1 comes after `runner stopped` with drained: false): its
      // consumers may have been left mid-drain, so a redelivery may follow, as after a crash.
      record.faults.add('crash', `${what}: txoutbox run ${outcome.why}`, true);
      const output = runner.lastOutput();
      record.finding(
        `${what}: after SIGTERM txoutbox run ${outcome.why} (${JSON.stringify(exit)})` +
          (output === undefined ? '' : `; its output ended with: ${output}`),
      );
    }
  }
  const strays = runner.consumersInGroup();
  if (strays.length > 0) {
    record.finding(
      `${what}: ${String(strays.length)} consumer process(es) still running after txoutbox run exited (pids ${strays.map((p) => p.pid).join(', ')})`,
    );
    record.faults.add('SIGKILL', `${what}: stray consumers`, true);
  }
  runner.kill();
}

/** stop() in a worker, timed by the worker itself; a drain that gave up on handlers is a fault. */
export async function stopWorker(record: Recorder, worker: WorkerProcess, what: string): Promise<void> {
  const budgetMs = worker.spec.gracefulTimeoutMs + STOP_SLACK_MS;
  // A graceful stop, as a SIGTERM to a runner: in the list of what was done, explaining nothing.
  record.faults.add('stop()', what, false);
  const result = await worker.stop(budgetMs + HANG_GRACE_MS);
  if (result === undefined) {
    record.stop({ what, ms: null, budgetMs });
    record.finding(
      `${what}: stop() had not returned ${s(budgetMs + HANG_GRACE_MS)} s after it was called (budget ${s(budgetMs)} s); the worker was killed`,
    );
    record.faults.add('SIGKILL', `${what}: a worker whose stop() hung`, true);
  } else {
    record.stop({ what, ms: result.ms, budgetMs });
    if (result.ms > budgetMs) {
      record.finding(
        `${what}: stop() took ${(result.ms / 1000).toFixed(1)} s (budget ${s(budgetMs)} s: gracefulTimeoutMs + ${s(STOP_SLACK_MS)} s)`,
      );
    }
    const timeouts = result.events.drain_timeout ?? 0;
    if (timeouts > 0) {
      // Handlers still running were abandoned with their leases: a redelivery may follow.
      record.faults.add('drain timeout', `${what}: ${String(timeouts)} drain_timeout event(s)`, true);
      record.note(`${what}: stop() gave up on running handlers (${String(timeouts)} drain_timeout)`);
    }
  }
  if ((await within(worker.exited, 5_000)) === undefined) worker.kill();
}
