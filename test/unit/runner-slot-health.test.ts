/**
 * ConsumerSlot's reading of its child's `health` reports: a reload's replacement counts as started
 * only once its ping() passed, and readiness needs several failed pings in a row to go down.
 *
 * The child is a fake (an EventEmitter the test drives): these are orderings of IPC messages a
 * real child produces only through timing (a slow ping, a broker refusing the connection), which a
 * test cannot choose with a real process. The real child is covered by runner-relays.test.ts.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { describe, test, type TestContext } from 'node:test';

import { ConsumerSlot, HEALTH_DOWN_AFTER_FAILED_PINGS, type RestartPolicy } from '../../src/runner/consumer-slot.js';
import { MetricsLedger } from '../../src/runner/metrics/metrics-ledger.js';
import { DEFAULT_RESTART_POLICY } from '../../src/runner/runner.js';
import { type Logger, silentLogger } from '../../src/util/logger.js';
import { RELAY_CHILD_SPEC } from '../support/child-specs.js';
import { waitFor } from '../support/wait-for.js';

/** A child process whose messages the test emits; it exits (asynchronously, as a real one) when signalled. */
class FakeChild extends EventEmitter {
  readonly pid = 4242;
  readonly signals: string[] = [];
  kill(signal: string): boolean {
    this.signals.push(signal);
    setImmediate(() => {
      this.emit('exit', null, signal);
      this.emit('close', null, signal);
    });
    return true;
  }
  send(): boolean {
    return true;
  }
  health(up: boolean): void {
    this.emit('message', { type: 'health', up });
  }
  ready(): void {
    this.emit('message', { type: 'ready' });
  }
  consuming(): void {
    this.emit('message', { type: 'consuming' });
  }
}

const SPEC = RELAY_CHILD_SPEC;

interface Logged {
  readonly level: string;
  readonly msg: string;
}

function recordingLogger(lines: Logged[]): Logger {
  const at =
    (level: string) =>
    (_fields: Record<string, unknown>, msg: string): void => {
      lines.push({ level, msg });
    };
  return { ...silentLogger, info: at('info'), warn: at('warn'), error: at('error') };
}

function slotWith(child: FakeChild, policy: Partial<RestartPolicy> = {}, logger: Logger = silentLogger): ConsumerSlot {
  return new ConsumerSlot(SPEC, {
    // A restart delay long enough that the slot never forks again during a test.
    policy: { ...DEFAULT_RESTART_POLICY, restartInitialDelayMs: 60_000, ...policy },
    ledger: new MetricsLedger(),
    logger,
    onRestart: () => undefined,
    forkChild: () => child as unknown as ChildProcess,
  });
}

/**
 * A slot started on mocked timers (`setTimeout`) with a 12 s ready timeout, its child reporting
 * `consuming` and nothing more yet; its log lines are recorded.
 */
function consumingOnMockedTimers(t: TestContext): { lines: Logged[]; child: FakeChild; slot: ConsumerSlot } {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const lines: Logged[] = [];
  const child = new FakeChild();
  const slot = slotWith(child, { replacementReadyTimeoutMs: 12_000 }, recordingLogger(lines));
  slot.start();
  child.consuming();
  return { lines, child, slot };
}

describe('ConsumerSlot: a reload replacement on probation', () => {
  test('ready while its ping() fails (a sink that cannot connect) is not started: not up in time, and stopped', async () => {
    const child = new FakeChild();
    const slot = slotWith(child, { replacementReadyTimeoutMs: 50 });
    const outcome = slot.startReplacement();
    child.health(false);
    child.ready();
    assert.deepEqual(await outcome, { ready: false, reason: 'not_up_in_time', pid: 4242, timeoutMs: 50 });
    assert.equal(slot.ready, false);
    await slot.stop();
    assert.deepEqual(child.signals, ['SIGTERM']);
    assert.equal(slot.alive, false);
  });

  test('ready with its ping() failing, then passing within the timeout: started', async () => {
    const child = new FakeChild();
    const slot = slotWith(child);
    const outcome = slot.startReplacement();
    child.health(false);
    child.ready();
    child.health(false);
    child.health(true); // the broker answered before the timeout
    assert.deepEqual(await outcome, { ready: true });
    assert.equal(slot.ready, true);
    await slot.stop();
  });

  test('ready with its ping() passing: started at once', async () => {
    const child = new FakeChild();
    const slot = slotWith(child);
    const outcome = slot.startReplacement();
    child.health(true);
    child.ready();
    assert.deepEqual(await outcome, { ready: true });
    assert.equal(slot.ready, true);
    await slot.stop();
  });

  test('exits while waiting for its ping() to pass: exited, not restarted', async () => {
    const child = new FakeChild();
    let restarts = 0;
    const slot = new ConsumerSlot(SPEC, {
      policy: { ...DEFAULT_RESTART_POLICY, restartInitialDelayMs: 0 },
      ledger: new MetricsLedger(),
      logger: silentLogger,
      onRestart: () => (restarts += 1),
      forkChild: () => child as unknown as ChildProcess,
    });
    const outcome = slot.startReplacement();
    child.health(false);
    child.ready();
    child.emit('exit', 1, null);
    const result = await outcome;
    assert.equal(result.ready, false);
    assert.equal(!result.ready && result.reason, 'exited');
    assert.equal(restarts, 0);
    assert.equal(slot.alive, false);
  });
});

describe('ConsumerSlot: first start (not a reload)', () => {
  test('a relay whose broker is down keeps running, not ready, and is ready once its ping() passes', async () => {
    const lines: Logged[] = [];
    const child = new FakeChild();
    const slot = slotWith(child, {}, recordingLogger(lines));
    slot.start();
    child.health(false);
    child.ready();
    assert.equal(slot.alive, true);
    assert.equal(slot.ready, false, 'a first failed ping: never up, so not ready at once');
    assert.ok(lines.some((line) => line.level === 'warn' && line.msg.startsWith('consumer process is not up')));
    child.health(true);
    assert.equal(slot.ready, true);
    assert.ok(lines.some((line) => line.level === 'info' && line.msg === 'consumer process is up again'));
    await slot.stop();
  });
});

describe('ConsumerSlot: the ready timeout of a first start', () => {
  test('a child that never says it is consuming is SIGKILLed at the timeout (a module that never finishes loading)', async () => {
    const child = new FakeChild();
    const slot = slotWith(child, { replacementReadyTimeoutMs: 50 });
    slot.start();
    await waitFor(() => child.signals.length > 0, { what: 'the kill' });
    assert.deepEqual(child.signals, ['SIGKILL']);
    await slot.stop();
  });

  test('a child consuming before the timeout is not killed while its first ping runs; ready later, it is started', async () => {
    // Reproduction (review finding): a module that took nearly the whole timeout to load was
    // SIGKILLed while its first ping() ran, after its Outbox had started claiming rows.
    const child = new FakeChild();
    const slot = slotWith(child, { replacementReadyTimeoutMs: 50 });
    slot.start();
    child.consuming();
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(child.signals, [], 'not killed past the timeout');
    child.health(true);
    child.ready();
    assert.equal(slot.ready, true);
    await slot.stop();
    assert.deepEqual(child.signals, ['SIGTERM']);
  });

  test('a consuming child that never reports ready (wedged: an endless loop, a deadlock) is killed after 10 minutes, and started again', async (t) => {
    // Review finding: with the warn-only timer alone such a child stayed `starting` for good.
    const { lines, child, slot } = consumingOnMockedTimers(t);
    t.mock.timers.tick(12_000); // the warning (mocked timers: a timer set in a callback counts from the tick's end)
    t.mock.timers.tick(587_000);
    assert.deepEqual(child.signals, [], 'not before 10 minutes');
    t.mock.timers.tick(1_000);
    assert.deepEqual(child.signals, ['SIGKILL']);
    assert.match(
      lines
        .filter((l) => l.level === 'error')
        .map((l) => l.msg)
        .join('\n'),
      /without reporting ready once .*killing it/,
    );
    t.mock.timers.reset();
    await slot.stop();
  });

  test('a consuming child whose ready comes long after the timeout (its loop blocked by synchronous handlers) is warned of, never killed', async (t) => {
    // Reproduction (review finding): it was SIGKILLed at the extended timeout, mid-delivery, and
    // a backlog that blocked each new process as long had every one of them killed in turn.
    const { lines, child, slot } = consumingOnMockedTimers(t);
    t.mock.timers.tick(10_500);
    assert.deepEqual(
      lines.filter((l) => l.level === 'warn'),
      [],
      'nothing said within its own 12 s',
    );
    t.mock.timers.tick(120_000);
    assert.deepEqual(child.signals, [], 'not killed');
    assert.equal(slot.ready, false);
    assert.deepEqual(
      lines.filter((l) => l.level === 'warn').map((l) => l.msg),
      [
        'consumer process is consuming but has not reported ready in time (its event loop blocked by synchronous handlers?); not ready until it does, not killed',
      ],
    );
    child.health(true);
    child.ready();
    assert.equal(slot.ready, true, 'ready when it reports');
    t.mock.timers.reset();
    await slot.stop();
    assert.deepEqual(child.signals, ['SIGTERM']);
  });
});

describe('ConsumerSlot: readiness hysteresis', () => {
  test(`down only after ${HEALTH_DOWN_AFTER_FAILED_PINGS} consecutive failed pings; up again at the first success`, async () => {
    const lines: Logged[] = [];
    const child = new FakeChild();
    const slot = slotWith(child, {}, recordingLogger(lines));
    slot.start();
    child.health(true);
    child.ready();
    assert.equal(slot.ready, true);

    for (let failed = 1; failed < HEALTH_DOWN_AFTER_FAILED_PINGS; failed += 1) {
      child.health(false); // one slow ping (a busy pool) is not an outage
      assert.equal(slot.ready, true, `still ready after ${failed} failed ping(s)`);
    }
    child.health(true); // a success resets the count
    for (let failed = 1; failed < HEALTH_DOWN_AFTER_FAILED_PINGS; failed += 1) child.health(false);
    assert.equal(slot.ready, true, 'the count restarted after the success');
    assert.ok(!lines.some((line) => line.msg.startsWith('consumer process is not up')));

    child.health(false);
    assert.equal(slot.ready, false, `not ready after ${HEALTH_DOWN_AFTER_FAILED_PINGS} failed pings in a row`);
    assert.equal(lines.filter((line) => line.level === 'warn' && line.msg.startsWith('consumer process is not up')).length, 1);
    child.health(false);
    assert.equal(lines.filter((line) => line.msg.startsWith('consumer process is not up')).length, 1, 'logged once per change');

    child.health(true);
    assert.equal(slot.ready, true, 'up again at the first success');
    assert.equal(lines.filter((line) => line.msg === 'consumer process is up again').length, 1);
    await slot.stop();
  });

  test('a restarted process starts counting afresh', async () => {
    const first = new FakeChild();
    const second = new FakeChild();
    const children = [first, second];
    const slot = new ConsumerSlot(SPEC, {
      policy: { ...DEFAULT_RESTART_POLICY, restartInitialDelayMs: 0, restartMaxDelayMs: 0 },
      ledger: new MetricsLedger(),
      logger: silentLogger,
      onRestart: () => undefined,
      forkChild: () => children.shift() as unknown as ChildProcess,
    });
    const restarted = new Promise<void>((resolve) => {
      const original = second.send.bind(second);
      second.send = () => {
        resolve();
        return original();
      };
    });
    slot.start();
    first.health(true);
    first.ready();
    first.health(false);
    first.emit('exit', 1, null);
    await restarted;
    second.health(true);
    second.ready();
    second.health(false);
    assert.equal(slot.ready, true, 'one failed ping of the new process, none carried over from the old one');
    await slot.stop();
  });
});

describe('ConsumerSlot: a process that stops answering', () => {
  test('no health report for healthSilenceMs (a blocked event loop): not ready, and ready again at the next report', async () => {
    const lines: Logged[] = [];
    const child = new FakeChild();
    const slot = slotWith(child, { healthSilenceMs: 50 }, recordingLogger(lines));
    slot.start();
    child.health(true);
    child.ready();
    assert.equal(slot.ready, true);
    // Not a fixed sleep: silence counts in steps of observed time (SilenceWatch), each late step
    // only its own length, so a loaded machine judges a little later.
    await waitFor(() => !slot.ready, { what: 'silent for longer than healthSilenceMs' });
    assert.equal(slot.alive, true, 'not killed: a long synchronous handler may still finish');
    assert.equal(lines.filter((line) => line.level === 'warn' && line.msg.includes('sent no health report in time')).length, 1);
    child.health(true);
    assert.equal(slot.ready, true);
    await slot.stop();
  });

  test('a first start that never reports ready (a handler module that never finishes loading): killed, and restarted', async () => {
    const lines: Logged[] = [];
    const child = new FakeChild();
    const slot = slotWith(child, { replacementReadyTimeoutMs: 50 }, recordingLogger(lines));
    slot.start();
    await new Promise((resolve) => setTimeout(resolve, 120));
    assert.deepEqual(child.signals, ['SIGKILL']);
    assert.ok(
      lines.some((line) => line.level === 'error' && line.msg.startsWith('consumer process did not report ready in time')),
    );
    assert.ok(lines.some((line) => line.msg === 'consumer process exited unexpectedly; restarting'));
    await slot.stop();
  });

  test('a start that reported ready in time is not killed', async () => {
    const child = new FakeChild();
    const slot = slotWith(child, { replacementReadyTimeoutMs: 50 });
    slot.start();
    child.health(true);
    child.ready();
    await new Promise((resolve) => setTimeout(resolve, 120));
    assert.deepEqual(child.signals, []);
    await slot.stop();
  });
});
