import assert from 'node:assert/strict';
import { test } from 'node:test';

import { useTestDatabase } from '../support/database.js';

const db = useTestDatabase(import.meta.url);

test('the test database answers', async () => {
  const { rows } = await db.pool.query<{ one: number }>('SELECT 1 AS one');
  assert.equal(rows[0]?.one, 1);
});
