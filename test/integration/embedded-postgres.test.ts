import assert from 'node:assert/strict';
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../src/embedded/index.js';
import { installedBinaries } from '../../src/embedded/postgres-binaries.js';
import { initdb } from '../../src/embedded/postgres-process.js';
import { OWNER_FILE, reapOrphanServers, SERVER_DIR_PREFIX } from '../../src/embedded/reap-orphans.js';
import { EmbeddedPostgresError, InvalidOptionError } from '../../src/errors.js';
import { waitFor } from '../support/wait-for.js';

const parents: string[] = [];
after(async () => {
  await Promise.all(parents.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function newParentDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'txoutbox-embedded-test-'));
  await chmod(dir, 0o755); // as root, the server runs as `postgres` and must reach its directory
  parents.push(dir);
  return dir;
}

/** Pids of postmasters whose data directory is under `dir` (Linux /proc). */
async function postmastersUnder(dir: string): Promise<number[]> {
  const parents = new Map<number, number>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0');
      if (!(cmdline.some((arg) => arg.startsWith(dir)) && cmdline.includes('-D'))) continue;
      // The parent's pid: the field after the command name in parentheses (which may hold spaces).
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // the process ended while we looked
    }
  }
  // A backend just forked still shows the postmaster's command line until it sets its own title
  // (CI saw two "postmasters" once): count only the processes whose parent is not one of them.
  return [...parents].filter(([, parent]) => !parents.has(parent)).map(([pid]) => pid);
}

async function assertNoServerLeft(dir: string): Promise<void> {
  await waitFor(async () => (await postmastersUnder(dir)).length === 0, { what: `no postgres under ${dir}` });
  await waitFor(async () => (await readdir(dir)).length === 0, { what: `${dir} emptied` });
}

function spawnChild(
  parentDir: string,
  mode: string,
): { child: ChildProcessByStdio<null, Readable, Readable>; ready: Promise<void>; exited: Promise<void> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/embedded-child.fixture.ts', parentDir, mode], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) resolve();
    });
    child.on('exit', () => {
      reject(new Error('child exited before its server was ready'));
    });
  });
  const exited = new Promise<void>((resolve) =>
    child.on('exit', () => {
      resolve();
    }),
  );
  return { child, ready, exited };
}

describe('startEmbeddedPostgres', () => {
  test('starts a real server on 127.0.0.1, creates databases, and stop() removes everything', async () => {
    const parentDir = await newParentDir();
    const server = await startEmbeddedPostgres({ parentDir });
    assert.match(server.connectionString, /^postgres:\/\/postgres:[0-9a-f]+@127\.0\.0\.1:\d+\/postgres$/);
    const url = await server.createDatabase('app_db');
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const { rows } = await client.query<{ db: string; v: number }>(
      `SELECT current_database() AS db, current_setting('server_version_num')::int AS v`,
    );
    await client.end();
    assert.deepEqual(rows[0]?.db, 'app_db');
    assert.ok(rows[0].v >= 130000);
    // Two stops at once share one: the second returned while the first was still stopping.
    const first = server.stop();
    await server.stop();
    await assertNoServerLeft(parentDir);
    await first;
  });

  test('bad options are refused by name before anything starts', async () => {
    // Reported (review): a string startTimeoutMs (from an environment variable) made the deadline a
    // concatenated string that never came; NaN disabled it; a misspelt key was ignored.
    const parentDir = await newParentDir();
    for (const [options, option] of [
      [{ startTimeoutMs: '500' }, 'startTimeoutMs'],
      [{ startTimeoutMs: Number.NaN }, 'startTimeoutMs'],
      [{ startTimeoutMs: -1 }, 'startTimeoutMs'],
      [{ port: 0 }, 'port'],
      [{ port: 70_000 }, 'port'],
      [{ parentDir: '' }, 'parentDir'],
      [{ onLog: 'yes' }, 'onLog'],
      [{ startTimeout: 5 }, 'startTimeout'],
    ] as const) {
      await assert.rejects(
        startEmbeddedPostgres({ parentDir, ...options } as never),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
        JSON.stringify(options),
      );
    }
    await assertNoServerLeft(parentDir);
  });

  for (const [name, mode, signal] of [
    ['a process that exits without stop()', 'exit', undefined],
    ['a process that dies of an uncaught exception', 'throw', undefined],
    ['Ctrl-C (SIGINT)', 'wait', 'SIGINT'],
    ['SIGTERM', 'wait', 'SIGTERM'],
  ] as const) {
    test(`no orphan postgres after ${name}`, async () => {
      const parentDir = await newParentDir();
      const { child, ready, exited } = spawnChild(parentDir, mode);
      try {
        if (signal !== undefined) {
          await ready;
          assert.equal((await postmastersUnder(parentDir)).length, 1);
          child.kill(signal);
        }
        await exited;
        await assertNoServerLeft(parentDir);
      } finally {
        // A failed assertion must not leave the child (and its server) running: it kept this
        // file's process alive until CI's own limit.
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        for (const pid of await postmastersUnder(parentDir)) process.kill(pid, 'SIGQUIT');
      }
    });
  }

  test('a server whose owner was SIGKILLed is reaped by the next start', async () => {
    const parentDir = await newParentDir();
    const { child, ready, exited } = spawnChild(parentDir, 'wait');
    await ready;
    child.kill('SIGKILL');
    await exited;
    const [orphan] = await postmastersUnder(parentDir);
    assert.ok(orphan !== undefined, 'SIGKILL leaves the server running: nothing can run in a killed process');
    const next = await startEmbeddedPostgres({ parentDir });
    await waitFor(async () => !(await postmastersUnder(parentDir)).includes(orphan), { what: 'orphan reaped' });
    await next.stop();
    await assertNoServerLeft(parentDir);
  });

  test('a stale postmaster.pid naming an unrelated live process: not signalled, the directory still reaped', async () => {
    const parentDir = await newParentDir();
    // A pid that was alive and is now gone: the dead owner.
    const owner = spawn('true', { stdio: 'ignore' });
    await new Promise((resolve) => owner.on('exit', resolve));
    // The pid the kernel handed to someone else since: a process that is not postgres at all.
    const bystander = spawn('sleep', ['600'], { stdio: 'ignore' });
    const bystanderExit = new Promise<NodeJS.Signals | null>((resolve) =>
      bystander.on('exit', (_code, signal) => {
        resolve(signal);
      }),
    );
    try {
      const dir = join(parentDir, `${SERVER_DIR_PREFIX}stale`);
      const data = join(dir, 'data');
      await mkdir(data, { recursive: true });
      await writeFile(join(dir, OWNER_FILE), `${owner.pid}\n`);
      // The layout PostgreSQL writes: pid, data directory, start time, port, socket dir, …
      await writeFile(join(data, 'postmaster.pid'), `${bystander.pid}\n${data}\n1700000000\n5432\n${dir}\n127.0.0.1\n`);

      assert.equal(await reapOrphanServers(parentDir), 1);
      assert.deepEqual(await readdir(parentDir), [], 'the stale directory is deleted');
    } finally {
      bystander.kill('SIGTERM');
    }
    assert.equal(await bystanderExit, 'SIGTERM', 'the bystander lived until we ended it: the reaper sent it nothing');
  });

  test('a failing test run stops its server, and its last lines name the failed test and its error', async () => {
    const parentDir = await newParentDir();
    const env: NodeJS.ProcessEnv = { ...process.env, TXOUTBOX_EMBEDDED_PARENT_DIR: parentDir };
    delete env.DATABASE_URL;
    const run = spawn(process.execPath, ['--import', 'tsx', 'scripts/run-tests.ts', 'test/fixtures/failing-run.fixture.ts'], {
      env,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let stdout = '';
    run.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    const code = await new Promise<number | null>((resolve) => run.on('close', resolve));
    assert.notEqual(code, 0);
    await assertNoServerLeft(parentDir);
    // A CI log may keep only the run's end: the failures are printed there, after the TAP.
    const tail = stdout.slice(stdout.lastIndexOf('# ---- failed tests ----'));
    assert.match(
      tail,
      /^# ---- failed tests ----\nnot ok: fails on purpose \(.*failing-run\.fixture\.ts\)\n\s+AssertionError.*expected failure/,
    );
  });

  test('as root, a parent directory the postgres user cannot enter is a typed error with the fix', async (t) => {
    if (userInfo().uid !== 0) {
      t.skip('only root runs the server as another user');
      return;
    }
    const parentDir = await newParentDir();
    await chmod(parentDir, 0o700);
    await assert.rejects(
      startEmbeddedPostgres({ parentDir }),
      (error: unknown) => error instanceof EmbeddedPostgresError && /chmod o\+x/.test(error.message),
    );
  });

  test('the password file is gone once the server runs', async () => {
    const parentDir = await newParentDir();
    const server = await startEmbeddedPostgres({ parentDir });
    try {
      const [serverDir] = (await readdir(parentDir)).filter((name) => name.startsWith(SERVER_DIR_PREFIX));
      assert.ok(serverDir !== undefined);
      assert.ok(!(await readdir(join(parentDir, serverDir))).includes('pwfile'), 'pwfile deleted after initdb');
    } finally {
      await server.stop();
    }
  });

  test('a pwfile planted in the server directory is not written through: initdb refuses to start', async () => {
    // As root the server directory belongs to `postgres` before the password is written: that
    // user could put a symlink there, and root would write the password wherever it points.
    const parentDir = await newParentDir();
    const victim = join(parentDir, 'victim');
    await writeFile(victim, 'original\n');
    await symlink(victim, join(parentDir, 'pwfile'));
    const { binaries } = await installedBinaries();
    await assert.rejects(
      initdb({
        binaries,
        user: undefined,
        cwd: parentDir,
        onLog: () => undefined,
        dataDir: join(parentDir, 'data'),
        superuser: 'postgres',
        password: 'secret',
      }),
      (error: unknown) => (error as NodeJS.ErrnoException).code === 'EEXIST',
    );
    assert.equal(await readFile(victim, 'utf8'), 'original\n');
  });

  test('starts when the ready line is never logged (log_min_messages=fatal)', { timeout: 120_000 }, async () => {
    const parentDir = await newParentDir();
    const server = await startEmbeddedPostgres({ parentDir, settings: { log_min_messages: 'fatal' } });
    try {
      const client = new pg.Client({ connectionString: server.connectionString });
      await client.connect();
      await client.query('SELECT 1');
      await client.end();
    } finally {
      await server.stop();
    }
    await assertNoServerLeft(parentDir);
  });

  test(
    'a server that never gets ready is stopped after startTimeoutMs: typed error with its last lines',
    { timeout: 120_000 },
    async () => {
      // An installation whose postgres logs a line and then never gets ready.
      const parentDir = await newParentDir();
      const fake = join(parentDir, 'fake-native');
      await mkdir(join(fake, 'bin'), { recursive: true, mode: 0o755 });
      await writeFile(join(fake, 'bin', 'initdb'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
      await writeFile(join(fake, 'bin', 'postgres'), '#!/bin/sh\necho "LOG:  still starting" >&2\nwhile :; do sleep 1; done\n', {
        mode: 0o755,
      });
      await assert.rejects(
        startEmbeddedPostgres({ parentDir, postgresDir: fake, startTimeoutMs: 2_000 }),
        (error: unknown) =>
          error instanceof EmbeddedPostgresError &&
          /startTimeoutMs/.test(error.message) &&
          error.message.includes('LOG:  still starting'),
      );
      await waitFor(async () => (await postmastersUnder(parentDir)).length === 0, { what: 'the fake server stopped' });
      assert.deepEqual(await readdir(parentDir), ['fake-native'], 'its directory deleted');
    },
  );

  test('stop() of a server that ignores signals (SIGSTOPped) still returns, the server killed', { timeout: 60_000 }, async () => {
    const parentDir = await newParentDir();
    const server = await startEmbeddedPostgres({ parentDir });
    const [postmaster] = await postmastersUnder(parentDir);
    assert.ok(postmaster !== undefined);
    process.kill(postmaster, 'SIGSTOP');
    await server.stop();
    await assertNoServerLeft(parentDir);
  });
});
