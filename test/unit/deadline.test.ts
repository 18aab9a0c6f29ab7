import assert from 'node:assert/strict';
import { test } from 'node:test';

import { beforeDeadline } from '../../src/util/deadline.js';

/** Timers this process holds right now (`process.getActiveResourcesInfo()` names each 'Timeout'). */
function pendingTimers(): number {
  return process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length;
}

test('beforeDeadline: the work wins, and its deadline timer is gone at once', async () => {
  const before = pendingTimers();
  const value = await beforeDeadline(Promise.resolve('done'), 60_000, () => 'late');
  assert.equal(value, 'done');
  assert.equal(pendingTimers(), before, 'a 60 s timer left behind would keep the process alive for 60 s');
});

test('beforeDeadline: the deadline wins with onDeadline’s value; the work is not awaited', async () => {
  let settle: (value: string) => void = () => undefined;
  const work = new Promise<string>((resolve) => (settle = resolve));
  const value = await beforeDeadline(work, 5, () => 'late');
  assert.equal(value, 'late');
  settle('done');
});

test('beforeDeadline: a rejecting work rejects and clears its timer; a throwing onDeadline rejects', async () => {
  const before = pendingTimers();
  await assert.rejects(
    beforeDeadline(Promise.reject(new Error('boom')), 60_000, () => 'late'),
    /boom/,
  );
  assert.equal(pendingTimers(), before);
  await assert.rejects(
    beforeDeadline(new Promise<never>(() => undefined), 5, () => {
      throw new Error('timed out after 5 ms');
    }),
    /timed out after 5 ms/,
  );
});
