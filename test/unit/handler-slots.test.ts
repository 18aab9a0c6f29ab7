import assert from 'node:assert/strict';
import { test } from 'node:test';

import { HandlerSlots } from '../../src/subscriber/handler-slots.js';

/** A waiter that records what it was told. */
function waiter(): { readonly told: boolean[]; readonly hear: (taken: boolean) => void } {
  const told: boolean[] = [];
  return { told, hear: (taken) => told.push(taken) };
}

test('a slot wait withdrawn holds no slot and leaves the queue; the next waiter gets the freed slot', () => {
  const slots = new HandlerSlots(1);
  assert.equal(slots.tryTake(), true);
  const late = waiter();
  const next = waiter();
  slots.wait(late.hear);
  slots.wait(next.hear);
  slots.withdraw(late.hear);
  assert.deepEqual(late.told, [false], 'the withdrawn wait ended without a slot');
  slots.give();
  assert.deepEqual(next.told, [true], 'the freed slot went to the waiter still queued');
  assert.deepEqual(late.told, [false], 'and not to the one withdrawn');
  assert.equal(slots.tryTake(), false, 'it is the only one taken: none leaked to the one that gave up');
  slots.give();
  assert.equal(slots.tryTake(), true);
});

test('a wait that got its slot is not undone by a withdrawal afterwards', () => {
  const slots = new HandlerSlots(1);
  assert.equal(slots.tryTake(), true);
  const waiting = waiter();
  slots.wait(waiting.hear);
  slots.give();
  slots.withdraw(waiting.hear);
  assert.deepEqual(waiting.told, [true], 'told once, that it holds the slot');
  assert.equal(slots.tryTake(), false, 'the slot stays taken');
});

test('waiters are served in order, one slot each', () => {
  const slots = new HandlerSlots(2);
  assert.equal(slots.tryTake(), true);
  assert.equal(slots.tryTake(), true);
  const order: number[] = [];
  for (const n of [1, 2, 3]) slots.wait(() => order.push(n));
  slots.give();
  slots.give();
  assert.deepEqual(order, [1, 2]);
  slots.give();
  assert.deepEqual(order, [1, 2, 3]);
  slots.give();
  assert.equal(slots.tryTake(), true, 'the fourth give frees a slot');
  assert.equal(slots.tryTake(), false);
});
