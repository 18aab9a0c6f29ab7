/** ctx.publish's options with the cause added (src/subscriber/follow-up.ts): headers checked before the spread. */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { InvalidOptionError } from '../../src/errors.js';
import { withCause } from '../../src/subscriber/follow-up.js';
import type { ClaimedRecord } from '../../src/subscriber/message.js';

const record = { id: '7', headers: { 'correlation-id': 'c-1' } } as unknown as ClaimedRecord;

test('headers that outbox.publish refuses are refused here too, before the cause is spread in', () => {
  // Review finding: `null` spread to nothing and an array to {"0": …}, stored, where outbox.publish refuses both.
  for (const headers of [null, ['a'], 'a=b', new Map([['a', 'b']])]) {
    assert.throws(
      () => withCause({ headers } as never, record),
      (error: unknown) => error instanceof InvalidOptionError && error.option === 'headers',
      JSON.stringify(headers),
    );
  }
  assert.deepEqual(withCause({ headers: { tenant: 'a' } }, record), {
    headers: { 'causation-id': '7', tenant: 'a' },
    correlationId: 'c-1',
  });
  assert.deepEqual(withCause(undefined, record), { headers: { 'causation-id': '7' }, correlationId: 'c-1' });
  // A correlation id given as a header in another case is given: the cause's is not added beside it.
  assert.deepEqual(withCause({ headers: { 'Correlation-Id': 'mine' } }, record), {
    headers: { 'causation-id': '7', 'correlation-id': 'mine' },
  });
});
