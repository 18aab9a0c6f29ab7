import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { describeDlqFilter } from '../../src/dlq/describe-filter.js';

// The words `txoutbox dlq purge` asks to confirm and the dashboard's confirmation page shows.
describe('describeDlqFilter', () => {
  test('each field narrows, in one phrasing for the CLI and the dashboard', () => {
    assert.equal(describeDlqFilter({}), 'EVERY dead letter, of every queue');
    assert.equal(describeDlqFilter({ queue: undefined, reason: undefined }), 'EVERY dead letter, of every queue');
    assert.equal(describeDlqFilter({ queue: 'orders' }), "every dead letter of queue 'orders'");
    assert.equal(
      describeDlqFilter({ queue: 'orders', reason: 'rejected', olderThanMs: 14 * 86_400_000 }),
      "every dead letter of queue 'orders' with reason 'rejected' that failed more than 14d ago",
    );
    assert.equal(
      describeDlqFilter({ failedBefore: new Date('2026-01-02T00:00:00Z'), failedAfter: new Date('2026-01-01T00:00:00Z') }),
      'every dead letter that failed before 2026-01-02T00:00:00.000Z and after 2026-01-01T00:00:00.000Z',
    );
  });
});
