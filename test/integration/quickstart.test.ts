import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { useTestDatabase } from '../support/database.js';

const db = useTestDatabase(import.meta.url);

test('the README quickstart is examples/quickstart.ts, unchanged', async () => {
  const readme = await readFile('README.md', 'utf8');
  const block = /## Quickstart\n\n```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.equal(block, await readFile('examples/quickstart.ts', 'utf8'));
});

test('the quickstart runs against a real database and prints its event', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/quickstart.ts'], {
    env: { ...process.env, DATABASE_URL: db.url },
  });
  assert.match(stdout, /queue: 'order\.created'/);
  assert.match(stdout, /body: \{ orderId: 1, total: 42 \}/);
});
