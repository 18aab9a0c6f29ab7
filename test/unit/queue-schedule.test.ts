import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { ClaimedRowTexts } from '../../src/subscriber/claimed-row.js';
import { type ClaimPlan, QueueSchedule, splitClaimRows } from '../../src/subscriber/queue-schedule.js';

// A claim row as claimMany returns it: id, the 10 claimed columns, report_queue, report_due_ms.
const claimedRow = (id: string, queue: string): ClaimedRowTexts => [id, queue, ...Array<null>(9).fill(null), null, null];
const report = (queue: string, dueMs: number | null): ClaimedRowTexts => [
  ...Array<null>(11).fill(null),
  queue,
  dueMs === null ? null : String(dueMs),
];

const queues = (count: number) => Array.from({ length: count }, (_, i) => `q${i}`);
const SAFETY_NET_MS = 1000;
/** Claims ask for more rows than these tests ever return: none is full (see the narrowing test). */
const LIMIT = 100;
const schedule = (count: number, maxActivePerClaim = 2) =>
  new QueueSchedule({ queues: queues(count), maxActivePerClaim, safetyNetMs: SAFETY_NET_MS });
/** Every listed queue reported as `due` (ms; null: empty). */
const reportAll = (plan: ClaimPlan, due: (queue: string) => number | null) => plan.queues.map((q) => report(q, due(q)));

describe('QueueSchedule', () => {
  test('splitClaimRows: report rows (id NULL) carry queue and due ms in their last two columns', () => {
    const { claimed, reports } = splitClaimRows([claimedRow('1', 'a'), report('a', -5), report('b', null), report('c', 250)]);
    assert.deepEqual(
      claimed.map((r) => r[0]),
      ['1'],
    );
    assert.deepEqual(
      [...reports],
      [
        ['a', -5],
        ['b', null],
        ['c', 250],
      ],
    );
  });

  test('every queue starts unknown and is listed; reports sort them into active and idle', () => {
    const s = schedule(4);
    const first = s.plan(0, LIMIT);
    assert.deepEqual(first.queues, ['q0', 'q1', 'q2', 'q3']);
    const claimed = s.learn(
      first,
      [claimedRow('1', 'q0'), ...reportAll(first, (q) => (q === 'q0' ? 0 : q === 'q1' ? 300 : null))],
      0,
    );
    assert.equal(claimed.length, 1, 'the report rows are not returned as claimed rows');
    assert.deepEqual(Object.fromEntries(s.states()), { q0: 'active', q1: 'idle', q2: 'idle', q3: 'idle' });
    assert.deepEqual(s.plan(1, LIMIT).queues, ['q0'], 'idle queues are not listed');
  });

  test('an idle queue is listed again at its next due time, or at the safety net when it has none', () => {
    const s = schedule(3);
    const first = s.plan(0, LIMIT);
    s.learn(
      first,
      reportAll(first, (q) => (q === 'q0' ? 300 : q === 'q1' ? 5000 : null)),
      0,
    );
    assert.deepEqual(s.plan(10, LIMIT).queues, []);
    assert.equal(s.msUntilDue(10), 290, 'the delayed row of q0 is due in 290 ms');
    assert.deepEqual(s.plan(300, LIMIT).queues, ['q0'], 'q0 when its row is due');
    assert.deepEqual(s.plan(999, LIMIT).queues, ['q0']);
    assert.equal(s.msUntilDue(999), 4001, 'q1 rechecked at the safety net, but an idle loop need not wake for it');
    assert.deepEqual(
      s.plan(SAFETY_NET_MS, LIMIT).queues,
      ['q0', 'q1', 'q2'],
      'every idle queue at the safety net (its row due later, or none)',
    );
  });

  test('at most half of the active queues per claim: two claims in flight list different queues', () => {
    const s = schedule(4, 50);
    const first = s.plan(0, LIMIT);
    s.learn(
      first,
      reportAll(first, () => 0),
      0,
    );
    const a = s.plan(1, LIMIT);
    const b = s.plan(1, LIMIT);
    assert.deepEqual([a.queues.length, b.queues.length], [2, 2]);
    assert.equal(
      a.queues.some((q) => b.queues.includes(q)),
      false,
    );
  });

  test('full claims list fewer active queues (down to one), a short one lists maxActivePerClaim again', () => {
    const s = schedule(200, 50);
    const first = s.plan(0, 100);
    s.learn(
      first,
      reportAll(first, () => 0),
      0,
    );
    const full = (plan: ClaimPlan) => [
      ...Array.from({ length: plan.limit }, (_, i) => claimedRow(String(i + 1), plan.queues[0]!)),
      ...reportAll(plan, () => 0),
    ];
    const listed: number[] = [];
    for (let i = 0; i < 8; i += 1) {
      const plan = s.plan(1, 100);
      listed.push(plan.queues.length);
      s.learn(plan, full(plan), 1);
    }
    assert.deepEqual(listed, [50, 25, 12, 6, 3, 1, 1, 1]);
    const short = s.plan(1, 100);
    s.learn(short, [claimedRow('1', short.queues[0]!), ...reportAll(short, () => 0)], 1);
    assert.equal(s.plan(1, 100).queues.length, 50);
  });

  test('a short claim lists as many queues as its rows per queue would fill a claim with, and full claims halve no lower', () => {
    const s = schedule(1000, 50);
    const first = s.plan(0, 100);
    s.learn(
      first,
      reportAll(first, () => 0),
      0,
    );
    // Every queue holds 20 rows: 3 queues give 60 (short), then 5 per claim fill it.
    const claim = (perQueue: number) => {
      const plan = s.plan(1, 100);
      const rows = plan.queues.flatMap((q, i) =>
        Array.from({ length: perQueue }, (_, j) => claimedRow(`${i * perQueue + j + 1}`, q)),
      );
      s.learn(plan, [...rows.slice(0, plan.limit), ...reportAll(plan, () => 0)], 1);
      return plan.queues.length;
    };
    assert.deepEqual([claim(20), claim(20), claim(20), claim(20), claim(20), claim(20), claim(20)], [50, 25, 12, 6, 3, 5, 5]);
    // An empty claim lists maxActivePerClaim again.
    claim(0);
    assert.equal(s.plan(1, 100).queues.length, 50);
  });

  test('active queues are listed in turn, at most maxActivePerClaim per claim, so none starves', () => {
    const s = schedule(7, 3);
    const first = s.plan(0, LIMIT);
    s.learn(
      first,
      reportAll(first, () => 0),
      0,
    );
    const seen = new Map<string, number>();
    for (let i = 0; i < 7; i += 1) {
      const plan = s.plan(1, LIMIT);
      assert.equal(plan.queues.length, 3);
      for (const q of plan.queues) seen.set(q, (seen.get(q) ?? 0) + 1);
      s.learn(
        plan,
        reportAll(plan, () => 0),
        1,
      );
    }
    // 7 claims × 3 = 21 listings over 7 queues: each exactly 3 times.
    assert.deepEqual([...seen.values()], [3, 3, 3, 3, 3, 3, 3]);
  });

  test('a wake lists the queue again; a wake after a claim was planned wins over its (older) report', () => {
    const s = schedule(3);
    const first = s.plan(0, LIMIT);
    s.learn(
      first,
      reportAll(first, () => null),
      0,
    );
    assert.deepEqual(s.plan(1, LIMIT).queues, []);
    s.wake('q1');
    const second = s.plan(2, LIMIT);
    assert.deepEqual(second.queues, ['q1']);
    // A publish to q1 committed after the claim's snapshot; its NOTIFY arrives before the report.
    s.wake('q1');
    s.learn(
      second,
      reportAll(second, () => null),
      3,
    );
    assert.equal(s.states().get('q1'), 'unknown', 'the empty report is older than the wake: q1 stays listed');
    s.wake('not-mine');
    assert.equal(s.states().has('not-mine'), false, 'a queue the subscription does not have is ignored');
  });

  test('a report of an older claim does not override a newer one (two claims in flight)', () => {
    const s = schedule(2);
    const first = s.plan(0, LIMIT);
    s.learn(
      first,
      reportAll(first, () => null),
      0,
    );
    s.wake('q0');
    // Unknown: listed by both claims.
    const older = s.plan(1, LIMIT);
    const newer = s.plan(1, LIMIT);
    s.learn(
      newer,
      reportAll(newer, () => 0),
      2,
    );
    s.learn(
      older,
      reportAll(older, () => null),
      3,
    );
    assert.equal(s.states().get('q0'), 'active');
  });

  test('a LISTEN reconnect (wake without a queue) makes every queue unknown: a missed notification strands none', () => {
    const s = schedule(5);
    const first = s.plan(0, LIMIT);
    s.learn(
      first,
      reportAll(first, (q) => (q === 'q0' ? 0 : null)),
      0,
    );
    s.wake();
    assert.deepEqual([...s.states().values()].sort(), ['active', 'unknown', 'unknown', 'unknown', 'unknown']);
    assert.deepEqual([...s.plan(1, LIMIT).queues].sort(), ['q0', 'q1', 'q2', 'q3', 'q4']);
  });

  test('a row that comes back (a delivery ended, a release) lists its idle queue again', () => {
    const s = schedule(2);
    const first = s.plan(0, LIMIT);
    s.learn(
      first,
      reportAll(first, () => null),
      0,
    );
    s.rowReturned('q1');
    assert.deepEqual(s.plan(1, LIMIT).queues, ['q1']);
  });

  test("a row that comes back while a claim is in flight wins over that claim's (older) empty report", () => {
    const s = schedule(2);
    const first = s.plan(0, LIMIT);
    s.learn(
      first,
      reportAll(first, () => 0),
      0,
    );
    assert.equal(s.states().get('q0'), 'active');
    const inFlight = s.plan(1, LIMIT);
    assert.ok(inFlight.queues.includes('q0'));
    // A retry of a q0 row committed after the claim's snapshot: the claim reports q0 empty.
    s.rowReturned('q0');
    s.learn(
      inFlight,
      reportAll(inFlight, () => null),
      2,
    );
    assert.notEqual(s.states().get('q0'), 'idle', 'the retried row is claimed by the next loop, not after the safety net');
  });

  test('a claim whose report a returning row overrode is not a try: the loop claims again before it sleeps', () => {
    // The race behind a row stranded for a whole poll interval (a 200-queue test under CI load): q0's
    // last due row runs; a claim listing q0 is planned; that row's delivery ends (rowReturned) before
    // the claim comes back empty, its report (q0's delayed row, due in 300 ms) ignored as older.
    const s = schedule(2);
    const first = s.plan(0, LIMIT);
    s.learn(first, [claimedRow('1', 'q0'), report('q0', 0), report('q1', null)], 0);
    const inFlight = s.plan(1, LIMIT);
    assert.deepEqual(inFlight.queues, ['q0']);
    s.rowReturned('q0');
    s.learn(inFlight, [report('q0', 300)], 2);
    assert.equal(s.moreToTry(), true, 'q0 was not tried since its row came back: claim again, do not sleep');
    const again = s.plan(3, LIMIT);
    assert.ok(again.queues.includes('q0'));
    s.learn(again, [report('q0', 298)], 3);
    assert.equal(s.moreToTry(), false);
    assert.equal(s.msUntilDue(3), 298, 'then the sleep ends when the delayed row is due');
  });

  test('a row that comes back to a queue the loop went to sleep on (tried, left active) wakes it', () => {
    const s = schedule(2);
    const first = s.plan(0, LIMIT);
    // q0's row is due but another claim holds it locked: listed, none taken, still active.
    s.learn(first, [report('q0', 0), report('q1', null)], 0);
    const second = s.plan(1, LIMIT);
    s.learn(second, [report('q0', 0)], 1);
    assert.equal(s.moreToTry(), false, 'every queue tried: the loop sleeps');
    // The holder (this subscription's other claim) ran it: q0 may hold more, due later.
    assert.equal(s.rowReturned('q0'), true, 'the sleeping loop is woken');
    assert.equal(s.moreToTry(), true);
  });

  test('after empty claims, an active queue woken since is listed next, not after a round of the others', () => {
    const s = schedule(6, 2);
    const first = s.plan(0, LIMIT);
    s.learn(first, [claimedRow('1', 'q0'), ...reportAll(first, () => 0)], 0);
    // Six active queues whose due rows wait (a key's turn, rows another consumer holds): a round of
    // empty claims tries them all, and the loop sleeps.
    while (s.moreToTry()) {
      const plan = s.plan(1, LIMIT);
      s.learn(
        plan,
        reportAll(plan, () => 0),
        1,
      );
    }
    // The queue listed last, so last in turn: a key of it was freed.
    s.wake('q5');
    assert.equal(s.moreToTry(), true);
    assert.deepEqual(s.plan(2, LIMIT).queues, ['q5', 'q0'], 'q5 first, then the rest in turn');
  });

  test("a freed key keeps the in-flight claim's report (a busy keyed drain) but not its try", () => {
    const s = schedule(2);
    const first = s.plan(0, LIMIT);
    s.learn(first, [claimedRow('1', 'q0'), report('q0', 0), report('q1', null)], 0);
    // A claim listing q0 is in flight when a key of q0 is freed (the DELETE of a row it ran landed).
    const inFlight = s.plan(1, LIMIT);
    s.keyFreed('q0');
    s.learn(inFlight, [claimedRow('2', 'q0'), report('q0', null)], 2);
    assert.equal(
      s.states().get('q0'),
      'idle',
      'the report counts: a wake would have ignored it, leaving q0 listed by every claim',
    );
    // Empty this time: the report counts, the try does not (the key's next row may be claimable now).
    const third = s.plan(3, LIMIT);
    s.wake('q0');
    const fourth = s.plan(4, LIMIT);
    assert.deepEqual(third.queues, [], 'q0 idle, q1 idle');
    s.keyFreed('q0');
    s.learn(fourth, [report('q0', 0)], 5);
    assert.equal(s.states().get('q0'), 'active');
    assert.equal(s.moreToTry(), true, 'not counted as tried: the loop claims again');
  });

  test('empty claims go on while queues it did not list may have rows; then the loop may sleep', () => {
    const s = schedule(6, 2);
    const first = s.plan(0, LIMIT);
    s.learn(first, [claimedRow('1', 'q0'), ...reportAll(first, () => 0)], 0);
    assert.equal(s.moreToTry(), true);
    // Six active queues whose rows another consumer holds locked: each claim lists 2 and gets none.
    const emptyClaims: number[] = [];
    for (let i = 0; i < 5 && s.moreToTry(); i += 1) {
      const plan = s.plan(1, LIMIT);
      s.learn(
        plan,
        reportAll(plan, () => 0),
        1,
      );
      emptyClaims.push(i);
    }
    assert.equal(emptyClaims.length, 3, 'one round over the six active queues, then sleep');
    assert.equal(s.moreToTry(), false);
  });
});
