import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { Lease } from '../../src/subscriber/lease.js';
import type { ClaimedRecord } from '../../src/subscriber/message.js';
import { RunningDeliveries } from '../../src/subscriber/running-deliveries.js';

const lease = (id: string): Lease => ({ record: { id } as ClaimedRecord, token: `t${id}`, leasedAt: 0 });
const ids = (registry: RunningDeliveries): string[] =>
  registry
    .all()
    .map((run) => run.lease.record.id)
    .sort();

describe('RunningDeliveries', () => {
  test('start, end in any order, find: the set of running leases is always exact', () => {
    const registry = new RunningDeliveries();
    const leases = ['1', '2', '3', '4', '5'].map(lease);
    const runs = leases.map((l) => registry.start(l, 0));
    assert.equal(registry.size, 5);
    registry.end(runs[1]!); // the middle: the last takes its place
    registry.end(runs[4]!); // the last
    registry.end(runs[0]!); // the first
    assert.deepEqual(ids(registry), ['3', '4']);
    assert.equal(registry.size, 2);
    assert.equal(registry.find(leases[2]!), runs[2]);
    assert.equal(registry.find(leases[1]!), undefined, 'an ended delivery is not found');
    registry.all().forEach((run, index) => {
      assert.equal(run.index, index, 'each delivery knows its index');
    });
    registry.end(runs[3]!);
    registry.end(runs[2]!);
    assert.equal(registry.size, 0);
  });

  test('ending a delivery twice does nothing the second time (another delivery keeps its place)', () => {
    const registry = new RunningDeliveries();
    const a = registry.start(lease('a'), 0);
    const b = registry.start(lease('b'), 0);
    registry.end(a);
    registry.end(a);
    assert.deepEqual(ids(registry), ['b']);
    assert.equal(b.index, 0);
    const c = registry.start(lease('c'), 0);
    registry.end(a);
    assert.deepEqual(ids(registry), ['b', 'c']);
    assert.equal(c.index, 1);
  });

  test('a running delivery is its signal: an abort reaches its handler, before or after it first looks', () => {
    const registry = new RunningDeliveries();
    const early = registry.start(lease('early'), 0);
    early.abort(new Error('lease lost'));
    assert.equal(early.signal.aborted, true);
    assert.equal((early.signal.reason as Error).message, 'lease lost');
    const late = registry.start(lease('late'), 0);
    const { signal } = late;
    registry.find(late.lease)?.abort(new Error('shutdown'));
    assert.equal(signal.aborted, true);
  });

  test('many starts and ends, shuffled, against a reference Set', () => {
    const registry = new RunningDeliveries();
    const reference = new Set<string>();
    const runs = new Map<string, ReturnType<RunningDeliveries['start']>>();
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let i = 0; i < 2_000; i += 1) {
      if (reference.size > 0 && random(3) === 0) {
        const victim = [...reference][random(reference.size)]!;
        registry.end(runs.get(victim)!);
        reference.delete(victim);
      } else {
        const id = String(i);
        runs.set(id, registry.start(lease(id), 0));
        reference.add(id);
      }
      assert.equal(registry.size, reference.size);
    }
    assert.deepEqual(ids(registry), [...reference].sort());
  });
});
