/**
 * ConsumerSlot's health-silence judgement (policy.healthSilenceMs) when the SUPERVISOR's own event
 * loop was blocked (a long GC, SIGSTOP, a VM pause). Before, the silence timers fired as soon as
 * the supervisor resumed, before it read the reports its children had queued in their pipes
 * meanwhile: every healthy process turned not ready once (/readyz flapped to 503). A silence now
 * counts only time the supervisor itself observed; a frozen child must still be caught.
 *
 * The children are real processes on real IPC pipes: the defect is the order in which the
 * supervisor handles its timers and the reports waiting in a pipe, which a fake child (an
 * EventEmitter the test drives, as in runner-slot-health.test.ts) cannot have. They are not
 * child-main but a few lines speaking its protocol with a report every REPORT_EVERY_MS: child-main
 * reports every HEALTH_INTERVAL_MS (5 s), so each test would block its loop for over 10 s.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { describe, test } from 'node:test';

import { ConsumerSlot } from '../../src/runner/consumer-slot.js';
import { MetricsLedger } from '../../src/runner/metrics/metrics-ledger.js';
import { DEFAULT_RESTART_POLICY } from '../../src/runner/runner.js';
import { type Logger, silentLogger } from '../../src/util/logger.js';
import { RELAY_CHILD_SPEC } from '../support/child-specs.js';
import { waitFor } from '../support/wait-for.js';

const SILENCE_MS = 300;
/** 15 reports per silence period: a healthy child is never near it, even on a loaded machine. */
const REPORT_EVERY_MS = 20;
/** Longer than the silence period by far: every silence timer is overdue when the loop resumes. */
const BLOCK_MS = SILENCE_MS * 4;

const REPORTER = `
process.send({ type: 'health', up: true });
process.send({ type: 'ready' });
setInterval(() => process.send({ type: 'health', up: true }), ${REPORT_EVERY_MS});
`;

const SILENT_WARNING = 'sent no health report in time';

interface Started {
  readonly slot: ConsumerSlot;
  readonly child: ChildProcess;
  readonly warnings: string[];
  /** Health reports this process (the test's own event loop) has handled so far. */
  readonly reports: () => number;
}

async function startReporter(): Promise<Started> {
  const warnings: string[] = [];
  const logger: Logger = { ...silentLogger, warn: (_fields, msg) => warnings.push(msg) };
  let child: ChildProcess | undefined;
  let reports = 0;
  const slot = new ConsumerSlot(RELAY_CHILD_SPEC, {
    // A restart delay long enough that the slot never forks again during a test.
    policy: { ...DEFAULT_RESTART_POLICY, restartInitialDelayMs: 60_000, healthSilenceMs: SILENCE_MS },
    ledger: new MetricsLedger(),
    logger,
    onRestart: () => undefined,
    forkChild: () => {
      child = spawn(process.execPath, ['-e', REPORTER], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      child.on('message', (message: { type?: unknown }) => {
        if (message.type === 'health') reports += 1;
      });
      return child;
    },
  });
  slot.start();
  await waitFor(() => slot.ready, { what: 'the reporter ready' });
  assert.ok(child !== undefined);
  return { slot, child, warnings, reports: () => reports };
}

/**
 * Blocks this process's event loop for `ms`, from a setImmediate callback: the loop's next turn
 * then runs its timers before it reads the pipes, as after a stall in any I/O callback.
 */
function blockLoop(ms: number, atTheEnd: () => void = () => undefined): Promise<void> {
  return new Promise((resolve) => {
    setImmediate(() => {
      const until = performance.now() + ms;
      while (performance.now() < until) {
        // busy: nothing else of this process runs meanwhile
      }
      atTheEnd();
      resolve();
    });
  });
}

/** Resolves once the loop has handled a health report sent after now (the pipe was read). */
async function nextReportHandled(started: Started): Promise<void> {
  const seen = started.reports();
  await waitFor(() => started.reports() > seen, { what: 'a health report handled' });
}

async function stop(started: Started): Promise<void> {
  started.child.kill('SIGCONT'); // a stopped process would hold its SIGTERM until continued
  await started.slot.stop();
}

describe('ConsumerSlot: health silence against a supervisor whose own loop was blocked', () => {
  test('the supervisor blocked longer than healthSilenceMs while its child kept reporting: ready throughout', async () => {
    const started = await startReporter();
    try {
      await blockLoop(BLOCK_MS);
      await nextReportHandled(started);
      assert.deepEqual(started.warnings, [], 'the reports queued in the pipe meanwhile were not silence');
      assert.equal(started.slot.ready, true);
    } finally {
      await stop(started);
    }
  });

  test('the supervisor and its child frozen together (a VM pause): ready throughout', async () => {
    const started = await startReporter();
    try {
      started.child.kill('SIGSTOP');
      // Both resume at once: nothing is queued in the pipe, the child's next report comes after.
      await blockLoop(BLOCK_MS, () => started.child.kill('SIGCONT'));
      await nextReportHandled(started);
      assert.deepEqual(started.warnings, [], 'the supervisor saw none of the pause: no silence to judge');
      assert.equal(started.slot.ready, true);
    } finally {
      await stop(started);
    }
  });

  test('a frozen child is still not ready after healthSilenceMs, and ready again once it reports', async () => {
    const started = await startReporter();
    try {
      const frozenAt = performance.now();
      started.child.kill('SIGSTOP');
      await waitFor(() => !started.slot.ready, { what: 'the frozen child not ready' });
      const tookMs = performance.now() - frozenAt;
      assert.ok(tookMs >= SILENCE_MS - REPORT_EVERY_MS, `judged silent after ${Math.round(tookMs)} ms, before healthSilenceMs`);
      assert.equal(started.warnings.filter((msg) => msg.includes(SILENT_WARNING)).length, 1, 'logged once');
      assert.equal(started.slot.alive, true, 'not killed: a long synchronous handler may still finish');
      started.child.kill('SIGCONT');
      await waitFor(() => started.slot.ready, { what: 'ready again at its next report' });
    } finally {
      await stop(started);
    }
  });

  test('a child frozen across a supervisor stall is still not ready once the supervisor has watched it for healthSilenceMs', async () => {
    const started = await startReporter();
    try {
      started.child.kill('SIGSTOP');
      await blockLoop(BLOCK_MS);
      const resumedAt = performance.now();
      await waitFor(() => !started.slot.ready, { what: 'the frozen child not ready' });
      assert.ok(performance.now() - resumedAt < SILENCE_MS * 3, 'not deferred for good by the stall');
      assert.equal(started.warnings.filter((msg) => msg.includes(SILENT_WARNING)).length, 1);
    } finally {
      await stop(started);
    }
  });
});
