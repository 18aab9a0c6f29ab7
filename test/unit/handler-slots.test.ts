import assert from 'node:assert/strict';
import { test } from 'node:test';

import { HandlerSlots } from '../../src/subscriber/handler-slots.js';

test('a slot wait given up at `until` holds no slot and leaves the queue; the next waiter gets the freed slot', async () => {
  const slots = new HandlerSlots(1);
  assert.equal(slots.tryTake(), true);
  let deadline!: () => void;
  const expired = new Promise<void>((resolve) => (deadline = resolve));
  const late = slots.take(expired);
  const next = slots.take();
  deadline();
  assert.equal(await late, false, 'the wait ended at its deadline without a slot');
  slots.give();
  assert.equal(await next, true, 'the freed slot went to the waiter still queued');
  assert.equal(slots.tryTake(), false, 'and it is the only one taken: none leaked to the one that gave up');
  slots.give();
  assert.equal(slots.tryTake(), true);
});

test('a wait that got its slot is not undone by its deadline afterwards', async () => {
  const slots = new HandlerSlots(1);
  assert.equal(slots.tryTake(), true);
  let deadline!: () => void;
  const expired = new Promise<void>((resolve) => (deadline = resolve));
  const waiting = slots.take(expired);
  slots.give();
  assert.equal(await waiting, true);
  deadline();
  await expired;
  assert.equal(slots.tryTake(), false, 'the slot stays taken');
});
