import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { flushBeforeExit } from '../../src/runner/child/exit-flush.js';
import { EXIT_FLUSH_BUDGET_MS } from '../../src/runner/protocol.js';

// A draining child's last metrics report, statsd flush and span export (child-main.ts drain): the
// supervisor SIGKILLs at gracefulTimeoutMs + 5 s, so together they must end within the budget.
// Scripted flushes on mocked timers: a slow DNS lookup and a silent collector are what they stand for.

/** Lets the microtasks queued by settled promises run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('flushBeforeExit', () => {
  test('starts every flush at once and ends at the budget when one never settles', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const started: string[] = [];
    let done = false;
    const after = (ms: number, name: string) => () => {
      started.push(name);
      return new Promise<void>((resolve) => setTimeout(resolve, ms));
    };
    const flushing = flushBeforeExit([
      after(2_000, 'report'),
      after(2_000, 'statsd'), // a name lookup that takes its time
      () => {
        started.push('tracing');
        return new Promise<void>(() => undefined); // a collector that never answers
      },
    ]).then(() => {
      done = true;
    });
    assert.deepEqual(started, ['report', 'statsd', 'tracing'], 'all three start before any of them ends');
    t.mock.timers.tick(EXIT_FLUSH_BUDGET_MS - 1);
    await settle();
    assert.equal(done, false, 'the two 2 s flushes ran side by side; the silent one is waited for up to the budget');
    t.mock.timers.tick(1);
    await settle();
    assert.equal(done, true, 'then the child exits, the silent flush abandoned');
    await flushing;
  });

  test('one after the other they would pass the budget; side by side they end with the slowest', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    let done = false;
    const after = (ms: number) => () => new Promise<void>((resolve) => setTimeout(resolve, ms));
    const flushing = flushBeforeExit([after(1_500), after(1_500), after(1_500)]).then(() => {
      done = true;
    });
    t.mock.timers.tick(1_500);
    await settle();
    assert.equal(done, true);
    await flushing;
  });

  test('a flush that throws or rejects neither stops the others nor the exit', async () => {
    const ran: string[] = [];
    await flushBeforeExit(
      [
        () => {
          throw new Error('statsd socket closed');
        },
        () => Promise.reject(new Error('export failed')),
        undefined, // no tracing configured
        () => {
          ran.push('report');
          return Promise.resolve();
        },
      ],
      60_000,
    );
    assert.deepEqual(ran, ['report'], 'resolved once all settled, long before the budget');
  });
});
