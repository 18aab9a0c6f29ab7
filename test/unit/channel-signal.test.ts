import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { duePayload, pausedPayload, payloadFor, readSignal } from '../../src/queues/channel-signal.js';

// The payloads of the NOTIFY channel (src/queues/channel-signal.ts).
describe('channel signals', () => {
  test('a queue, a pause and a delayed row read back as sent', () => {
    assert.deepEqual(readSignal('orders'), { kind: 'wake', queue: 'orders' });
    assert.deepEqual(readSignal(pausedPayload('orders')), { kind: 'paused', queue: 'orders' });
    assert.deepEqual(readSignal(duePayload('orders', 600)), { kind: 'due', queue: 'orders', inMs: 600 });
    // What the in-transaction statement sends (src/producer/sql.ts, announceDue), not rounded.
    assert.deepEqual(readSignal('\u0001due\u00011234\u0001a.b:c'), { kind: 'due', queue: 'a.b:c', inMs: 1234 });
  });

  test('a delay is rounded up to 10 ms, never down', () => {
    for (const inMs of [0, 1, 9, 10, 11, 599, 640, 641, 1_000, 2_047, 60_000, 3_600_000, 86_400_000 * 30]) {
      const signal = readSignal(duePayload('q', inMs));
      assert.equal(signal.kind, 'due');
      const rounded = signal.kind === 'due' ? signal.inMs : Number.NaN;
      assert.ok(rounded >= inMs, `${inMs} → ${rounded}: never early`);
      assert.ok(rounded - inMs < 10, `${inMs} → ${rounded}: under 10 ms late, whatever the delay`);
    }
    assert.equal(duePayload('q', -5), duePayload('q', 0), 'a time already past is due now');
    // A burst's delays share a payload, so the notifier sends it once.
    assert.equal(duePayload('q', 60_001), duePayload('q', 60_009.5));
  });

  test('a malformed announcement is read as a queue nobody serves, never as a wake-up of another queue', () => {
    for (const payload of [
      '\u0001due\u0001',
      '\u0001due\u0001x\u0001q',
      '\u0001due\u0001-5\u0001q',
      '\u0001due\u000112',
      '\u0001due\u0001\u0001q',
      '\u0001due\u00010x10\u0001q',
      '\u0001due\u00011.5\u0001q',
    ]) {
      assert.deepEqual(readSignal(payload), { kind: 'wake', queue: payload });
    }
  });

  test("a statement's due answer becomes the queue, an announcement, or nothing", () => {
    assert.equal(payloadFor('q', { due: true, due_in_ms: null }), 'q');
    assert.equal(payloadFor('q', { due: false, due_in_ms: 1_234.5 }), duePayload('q', 1_234.5));
    assert.equal(payloadFor('q', { due: false, due_in_ms: '1234.5' }), duePayload('q', 1_234.5), 'a driver answering text');
    assert.equal(payloadFor('q', undefined), undefined, 'no row');
    assert.equal(payloadFor('q', { due: null, due_in_ms: null }), undefined, 'nothing released');
    assert.equal(payloadFor('q', { due: false, due_in_ms: 'x' }), undefined);
  });
});
