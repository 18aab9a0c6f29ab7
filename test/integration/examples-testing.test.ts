import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The examples import 'txoutbox/testing' as a user would (tsconfig paths here, package exports once installed). */
function exampleEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  // Set for this file by node:test: a nested runner would report to this one instead of printing TAP.
  delete env.NODE_TEST_CONTEXT;
  return env;
}

test('examples/testing/node-test.test.ts passes under node:test, without a database', async () => {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--test', 'examples/testing/node-test.test.ts'], {
    env: { ...exampleEnv(), DATABASE_URL: '' },
    timeout: 120_000,
  });
  assert.match(stdout, /^# pass 5$/m);
  assert.match(stdout, /^# fail 0$/m);
});

test('examples/testing/vitest.test.ts passes under vitest, without a database', async () => {
  const { stdout } = await run(
    process.execPath,
    ['node_modules/vitest/vitest.mjs', 'run', '--config', 'examples/testing/vitest.config.ts', '--reporter', 'verbose'],
    { env: { ...exampleEnv(), DATABASE_URL: '', NO_COLOR: '1' }, timeout: 120_000 },
  );
  assert.match(stdout, /Tests\s+3 passed \(3\)/);
});
