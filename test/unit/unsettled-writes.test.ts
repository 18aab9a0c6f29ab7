import assert from 'node:assert/strict';
import { test } from 'node:test';

import { UnsettledWrites } from '../../src/subscriber/unsettled-writes.js';

const row = (id: string, attempts: number) => ({ id, attempts_count: attempts });

test('a claim of a watched row as it was written marks its transaction reclaimed', () => {
  const unsettled = new UnsettledWrites();
  const watch = unsettled.watch([row('1', 0), row('2', 3)]);
  unsettled.claimed([row('7', 0)]);
  assert.equal(watch.reclaimed, false, 'another row says nothing');
  unsettled.claimed([row('2', 4)]);
  assert.equal(watch.reclaimed, false, "a raised attempts_count is the transaction's retry landing, not evidence against it");
  unsettled.claimed([row('9', 0), row('2', 3)]);
  assert.equal(watch.reclaimed, true);
});

test('an ended watch hears nothing more, and leaves a later watch of the same row in place', () => {
  const unsettled = new UnsettledWrites();
  const first = unsettled.watch([row('1', 0)]);
  const second = unsettled.watch([row('1', 1)]);
  first.end();
  unsettled.claimed([row('1', 0)]);
  assert.equal(first.reclaimed, false);
  assert.equal(second.reclaimed, false, 'claimed with the first watch’s attempts_count, not its own');
  unsettled.claimed([row('1', 1)]);
  assert.equal(second.reclaimed, true, 'ending the first did not drop the second');
  second.end();
  const third = unsettled.watch([]);
  unsettled.claimed([row('1', 1)]);
  assert.equal(third.reclaimed, false);
});
