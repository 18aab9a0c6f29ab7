/**
 * The order W5 runs its variants in, round by round (bench/src/systems/seam-variants.ts): every
 * variant once per round, and a different predecessor for each variant from round to round, so that
 * no variant always inherits the same one's garbage (a rotation kept the cycle, and the dropping
 * sampler ran after recorded tracing in every round).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { roundOrder, W5_ORDER } from '../../bench/src/systems/seam-variants.js';

test('every round runs every variant once', () => {
  for (let round = 0; round < 20; round += 1) {
    const order = roundOrder(W5_ORDER, round);
    assert.equal(order.length, W5_ORDER.length);
    assert.deepEqual([...order].sort(), [...W5_ORDER].sort(), `round ${round}`);
  }
});

test("a variant's predecessor differs from round to round", () => {
  const rounds = W5_ORDER.length - 1;
  for (const variant of W5_ORDER) {
    const predecessors = new Set<string>();
    for (let round = 0; round < rounds; round += 1) {
      const order = roundOrder(W5_ORDER, round);
      const at = order.indexOf(variant);
      predecessors.add(at === 0 ? '(first)' : (order[at - 1] as string));
    }
    assert.ok(predecessors.size >= rounds - 1, `${variant}: predecessors ${[...predecessors].join(', ')} over ${rounds} rounds`);
  }
  const dropped = Array.from({ length: 5 }, (_, round) => {
    const order = roundOrder(W5_ORDER, round);
    return order[order.indexOf('tracing-dropped') - 1];
  });
  assert.ok(dropped.filter((before) => before === 'tracing').length <= 1, `before the dropping sampler: ${dropped.join(', ')}`);
});

test('orders of other sizes are permutations too', () => {
  for (const n of [1, 2, 4, 6, 9]) {
    const items = Array.from({ length: n }, (_, i) => i);
    for (let round = 0; round < 12; round += 1)
      assert.deepEqual(
        [...roundOrder(items, round)].sort((a, b) => a - b),
        items,
      );
  }
});

test('no variant keeps one place in every round', () => {
  for (const variant of W5_ORDER) {
    const places = new Set(Array.from({ length: 5 }, (_, round) => roundOrder(W5_ORDER, round).indexOf(variant)));
    assert.ok(places.size > 1, `${variant} always at ${[...places].join()}`);
  }
});
