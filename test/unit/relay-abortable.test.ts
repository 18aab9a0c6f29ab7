import assert from 'node:assert/strict';
import { test } from 'node:test';

import { abortable } from '../../src/relay/sinks/abortable.js';

test('abortable: the work wins when it settles first; an abort rejects every waiter with the reason, through one listener per signal', async () => {
  const warnings: Error[] = [];
  const onWarning = (warning: Error): void => {
    warnings.push(warning);
  };
  process.on('warning', onWarning);
  try {
    const controller = new AbortController();
    assert.equal(await abortable(Promise.resolve(7), controller.signal), 7);
    await assert.rejects(abortable(Promise.reject(new Error('broker said no')), controller.signal), /broker said no/);

    // 64 sends in flight on one shared signal: Node warns past 10 listeners on one EventTarget.
    const never = new Promise<never>(() => undefined);
    const waiting = Array.from({ length: 64 }, () => abortable(never, controller.signal));
    controller.abort(new Error('relay stopping'));
    for (const result of await Promise.allSettled(waiting)) {
      assert.equal(result.status, 'rejected');
      assert.match(String(result.reason), /relay stopping/);
    }
    // Already aborted: rejects at once, with an Error even for a non-Error reason.
    const other = new AbortController();
    other.abort('shutdown');
    await assert.rejects(abortable(never, other.signal), /aborted: shutdown/);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(
      warnings.filter((w) => w.name === 'MaxListenersExceededWarning'),
      [],
    );
  } finally {
    process.off('warning', onWarning);
  }
});
