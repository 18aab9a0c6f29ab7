/**
 * ConsumerSlot when the OS gives no process: real failed forks, not fakes. A child whose spawn
 * failed (ENOENT here; EAGAIN under a pids limit and EMFILE take the same path) emits 'error' and
 * never 'exit', which left the slot `starting` for good: never restarted, never ready. A fork()
 * that throws did so from the restart timer, an uncaught exception that ended the supervisor.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, fork } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { describe, test } from 'node:test';

import { ConsumerSlot, type RestartPolicy } from '../../src/runner/consumer-slot.js';
import { MetricsLedger } from '../../src/runner/metrics/metrics-ledger.js';
import { DEFAULT_RESTART_POLICY } from '../../src/runner/runner.js';
import { type Logger, silentLogger } from '../../src/util/logger.js';
import { RELAY_CHILD_SPEC } from '../support/child-specs.js';
import { waitFor } from '../support/wait-for.js';

/** gracefulTimeoutMs 60 s: a stop() that waited for a process that never existed would show. */
const SPEC = { ...RELAY_CHILD_SPEC, gracefulTimeoutMs: 60_000 };

function slotForking(
  forkChild: () => ChildProcess,
  errors: string[],
  policy: Partial<RestartPolicy> = {},
): { slot: ConsumerSlot; restarts: () => number; restartedAt: number[] } {
  let restarts = 0;
  const restartedAt: number[] = [];
  const logger: Logger = {
    ...silentLogger,
    error: (_fields, msg) => {
      errors.push(msg);
    },
  };
  const slot = new ConsumerSlot(SPEC, {
    policy: { ...DEFAULT_RESTART_POLICY, restartInitialDelayMs: 10, restartMaxDelayMs: 20, ...policy },
    ledger: new MetricsLedger(),
    logger,
    onRestart: () => {
      restarts += 1;
      restartedAt.push(performance.now());
    },
    forkChild,
  });
  return { slot, restarts: () => restarts, restartedAt };
}

/** A real spawn failure: the executable does not exist. */
const missingExecutable = (): ChildProcess =>
  fork('unused.js', [], { execPath: '/nonexistent/txoutbox-test-node', stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });

describe('ConsumerSlot: a fork the OS refused', () => {
  test('a spawn error (no pid, no exit): the slot is not alive, is restarted with backoff, and stops at once', async () => {
    const errors: string[] = [];
    const { slot, restarts } = slotForking(missingExecutable, errors);
    slot.start();
    await waitFor(() => restarts() >= 2, { what: 'the slot forked again after the failed spawns' });
    assert.ok(errors.includes('could not fork the consumer process'), errors.join('; '));
    assert.equal(slot.ready, false);
    const startedAt = Date.now();
    assert.equal(await slot.stop(), true);
    // Not the graceful timeout (60 s) plus the kill margins: there is no process to wait for.
    assert.ok(Date.now() - startedAt < 5_000, 'stop() did not wait for a process that never existed');
    assert.equal(slot.alive, false);
  });

  test('fork() throwing, from start() and from the restart timer: restarted with backoff, not an uncaught exception', async () => {
    const errors: string[] = [];
    let calls = 0;
    const { slot, restarts } = slotForking(() => {
      calls += 1;
      // A real synchronous throw of fork(): an option it rejects before spawning.
      return fork('unused.js', [], { execPath: 42 as unknown as string });
    }, errors);
    slot.start();
    await waitFor(() => restarts() >= 2, { what: 'restarts from the timer' });
    assert.ok(calls >= 3);
    assert.ok(
      errors.every((msg) => msg === 'could not fork the consumer process' || msg.includes('crash-looping')),
      errors.join('; '),
    );
    assert.equal(slot.alive, false);
    assert.equal(await slot.stop(), true);
  });

  test('a crash loop stays backed off: its next exit after the maximum delay is not counted as the first', async () => {
    const errors: string[] = [];
    // The maximum delay (200 ms) longer than the window (100 ms), as the defaults have it (60 s, 30 s).
    const { slot, restartedAt } = slotForking(missingExecutable, errors, {
      restartInitialDelayMs: 10,
      restartMaxDelayMs: 200,
      crashLoopExits: 3,
      crashLoopWindowMs: 100,
    });
    slot.start();
    await waitFor(() => restartedAt.length >= 6, { what: 'six restarts', timeoutMs: 20_000 });
    await slot.stop();
    const gaps = restartedAt.slice(1).map((at, i) => at - (restartedAt[i] as number));
    // 10, 20, then the crash loop: every later restart waits the maximum, none falls back to 10 ms.
    const firstLong = gaps.findIndex((gap) => gap >= 150);
    assert.ok(firstLong !== -1 && firstLong <= 2, `gaps ${gaps.map(Math.round).join(', ')}`);
    for (const gap of gaps.slice(firstLong)) assert.ok(gap >= 150, `gaps ${gaps.map(Math.round).join(', ')}`);
  });
});
