import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { UntilFirstWait } from '../../src/subscriber/until-first-wait.js';
import { waitFor } from '../support/wait-for.js';

describe('UntilFirstWait: what a consumer start leaves until its subscriptions first wait', () => {
  test('runs once, at the first wait; later waits do nothing; the cap no longer fires', async () => {
    let runs = 0;
    const deferred = new UntilFirstWait(() => void (runs += 1), 20);
    deferred.arm();
    assert.equal(runs, 0, 'not at arm()');
    deferred.waited();
    deferred.waited();
    assert.equal(runs, 1);
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(runs, 1, 'the cap timer was cleared');
  });

  test('runs after maxDelayMs when nothing waits; a wait afterwards does nothing', async () => {
    let runs = 0;
    const deferred = new UntilFirstWait(() => void (runs += 1), 20);
    deferred.arm();
    deferred.arm();
    await waitFor(() => runs === 1, { what: 'the cap' });
    deferred.waited();
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(runs, 1, 'once, although armed twice');
  });

  test('armed again after it ran (a subscription added later): runs again at once, for what that one brought', () => {
    let runs = 0;
    const deferred = new UntilFirstWait(() => void (runs += 1), 60_000);
    deferred.arm();
    deferred.waited();
    deferred.arm();
    assert.equal(runs, 2);
  });

  test('cancelled (stop()): neither a wait nor the cap nor arm() runs it', async () => {
    let runs = 0;
    const deferred = new UntilFirstWait(() => void (runs += 1), 20);
    deferred.arm();
    deferred.cancel();
    deferred.waited();
    deferred.arm();
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(runs, 0);
  });
});
