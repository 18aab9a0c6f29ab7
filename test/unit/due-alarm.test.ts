import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { DueAlarm } from '../../src/subscriber/due-alarm.js';

// The alarm that wakes a claim loop when rows known to be due later come due (retries a
// subscription wrote, delayed publishes announced on the channel: src/subscriber/due-alarm.ts). Mocked timers and a clock that follows them.
function setup(t: { mock: { timers: { enable: (o: { apis: 'setTimeout'[] }) => void; tick: (ms: number) => void } } }) {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  let clock = 0;
  const wakes: number[] = [];
  const refills: number[] = [];
  const alarm = new DueAlarm(() => wakes.push(clock), { now: () => clock, refill: () => refills.push(clock) });
  const advance = (ms: number) => {
    for (let i = 0; i < ms; i += 1) {
      clock += 1;
      t.mock.timers.tick(1);
    }
  };
  return { alarm, wakes, refills, advance };
}

describe('DueAlarm', () => {
  test('wakes once each retry is due, the earliest first, never before', (t) => {
    const { alarm, wakes, advance } = setup(t);
    alarm.add(500);
    alarm.add(100); // written later, due sooner: the alarm moves up
    advance(102);
    assert.deepEqual(wakes, [], 'not at the due time itself: timers may round early');
    advance(1);
    assert.deepEqual(wakes, [103], 'due + 2 ms + 0.1 % of the delay (clocks that drift)');
    advance(400);
    assert.deepEqual(wakes, [103, 503], 'the later one still has its wake-up');
    advance(1_000);
    assert.equal(wakes.length, 2, 'and nothing after');
  });

  test('retries due within a few milliseconds of each other share one wake-up, at the last of them', (t) => {
    const { alarm, wakes, advance } = setup(t);
    for (const dueAt of [200, 203, 207, 209]) alarm.add(dueAt);
    alarm.add(400);
    advance(500);
    assert.deepEqual(wakes, [212, 403]);
  });

  test('clear() (stop) forgets every due time and refill, and a retry written after it (a drain that timed out) arms nothing', (t) => {
    const { alarm, wakes, refills, advance } = setup(t);
    alarm.add(100);
    alarm.add(300);
    alarm.unknownAfter(300);
    alarm.clear();
    alarm.add(500);
    alarm.unknownAfter(500);
    advance(1_000);
    assert.deepEqual(wakes, []);
    assert.deepEqual(refills, []);
  });

  test('a retry due past the longest timer Node takes (24.8 days) wakes nobody before it is due', (t) => {
    const { alarm, wakes, advance } = setup(t);
    const year = 365 * 24 * 3600 * 1000;
    alarm.add(year);
    // Node fires a setTimeout past 2^31 - 1 ms at once (with a warning): every millisecond, an empty claim.
    advance(50);
    assert.deepEqual(wakes, []);
  });

  for (const order of ['latest first', 'earliest first'] as const) {
    test(`past 1,000 pending due times (added ${order}) the latest are dropped, the earliest kept, and a refill asked for once the rest fired`, (t) => {
      const { alarm, wakes, refills, advance } = setup(t);
      // Each 20 ms apart: no two share a wake-up.
      const times = Array.from({ length: 1_001 }, (_, i) => (i + 1) * 20);
      for (const dueAt of order === 'latest first' ? times.reverse() : times) alarm.add(dueAt);
      advance(999 * 20 + 20); // the 999th: 19,980 ms + 2 + 0.1 %
      assert.deepEqual(refills, [], `${order}: not before the last listed fired`);
      advance(30); // the 1,000th: 20,000 ms + 2 + 20
      assert.equal(wakes.length, 1_000);
      assert.equal(wakes[0], 23);
      assert.deepEqual(refills, [wakes.at(-1)], `${order}: at the last listed wake-up, for the times beyond it`);
      advance(100);
      assert.equal(wakes.length, 1_000, `${order}: the 1,001st (the latest) has none of its own`);
      assert.equal(refills.length, 1);
    });
  }

  test('unknownAfter: once that due time has fired, one refill; none while the list is whole', (t) => {
    const { alarm, wakes, refills, advance } = setup(t);
    alarm.add(100);
    alarm.add(200);
    alarm.unknownAfter(200); // a read that stopped at its limit with the row due at 200
    alarm.add(300); // announced meanwhile: the rows between 200 and 300 are still unknown
    advance(150);
    assert.deepEqual(refills, []);
    advance(100);
    assert.deepEqual(wakes, [103, 203]);
    assert.deepEqual(refills, [203], "with the wake-up at 200, not at the list's end");
    advance(200);
    assert.deepEqual(refills, [203], 'once');
    alarm.unknownAfter(50); // already past: at the next wake-up
    alarm.add(600);
    advance(200);
    assert.deepEqual(refills, [203, 603]);
  });

  test('a burst announcing one due time keeps one entry: the limit of 1,000 is left for other times', (t) => {
    const { alarm, wakes, advance } = setup(t);
    // 5,000 announcements of a row due at 100, as they arrive over 5 ms (each of the five times
    // 1,000 times over: listed each time, they would fill the 1,000 places).
    for (let i = 0; i < 5_000; i += 1) alarm.add(100 - (i % 5));
    alarm.add(5_000);
    advance(110);
    assert.deepEqual(wakes, [103], 'one wake-up for the burst, 2 ms and 0.1 % late, on the next tick');
    advance(5_000);
    assert.deepEqual(wakes, [103, 5_007], 'the later one was kept');
  });
});
