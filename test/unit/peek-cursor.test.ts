import assert from 'node:assert/strict';
import { test } from 'node:test';

import { InvalidOptionError } from '../../src/errors.js';
import { resolvePeek } from '../../src/queues/peek.js';

/** A cursor as peek() makes it: base64url JSON of (state, UTC timestamp text at microseconds, id). */
const cursorAt = (at: string, state = 'ready'): string => Buffer.from(JSON.stringify([state, at, '7'])).toString('base64url');

test('a cursor whose timestamp is not a real date is refused as the cursor, before any statement', () => {
  // Each passed the shape check and reached PostgreSQL as ::timestamp, a raw 22008 error.
  for (const at of [
    '2024-13-45T99:99:99.000000',
    '0000-01-01T00:00:00.000000',
    '2024-00-10T00:00:00.000000',
    '2024-04-31T00:00:00.000000',
    '2023-02-29T00:00:00.000000',
    '1900-02-29T00:00:00.000000',
    '2024-01-01T24:00:00.000000',
    '2024-01-01T23:60:00.000000',
    '2024-01-01T23:59:60.000000',
  ]) {
    assert.throws(
      () => resolvePeek('q', { cursor: cursorAt(at) }),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'cursor' && error.fix !== undefined,
      at,
    );
  }
});

test('every date a row can carry is a cursor: leap days, the first and last day of the years publish accepts', () => {
  for (const at of [
    '2024-02-29T23:59:59.999999',
    '2000-02-29T00:00:00.000000',
    '0001-01-01T00:00:00.000000',
    '9999-12-31T23:59:59.999999',
    '2026-12-31T12:30:00.000001',
  ]) {
    assert.deepEqual(resolvePeek('q', { cursor: cursorAt(at) }).cursor, { state: 'ready', at, id: '7' }, at);
  }
});
