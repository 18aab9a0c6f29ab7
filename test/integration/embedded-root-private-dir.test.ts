import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chmod, chown, lchown, mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../src/embedded/index.js';
import { binariesIn, binariesRunnableBy, installedBinaries } from '../../src/embedded/postgres-binaries.js';
import { type OsUser, postgresOsUser } from '../../src/embedded/postgres-os-user.js';
import { EmbeddedPostgresError } from '../../src/errors.js';

/**
 * Issue 14: as root, a project in a directory the `postgres` OS user cannot enter (root's 0700 home,
 * any `mktemp -d`) died with `spawn …/native/bin/initdb EACCES`: PostgreSQL refuses root, so it runs
 * as `postgres`, and the kernel checks every directory on the binary's path. Here the binaries sit
 * in a 0700 directory, as the project's node_modules do in such a checkout (the end-to-end case, an
 * installed tarball in a `mktemp -d` project, is test/packaging/pack-smoke.test.ts).
 */
const root = userInfo().uid === 0;
const cleanup: string[] = [];
let closedInstall: { binaries: ReturnType<typeof binariesIn>; version: string };
let postgresUser: OsUser;

describe(
  'embedded PostgreSQL as root, binaries in a directory the postgres user cannot enter',
  { skip: root ? false : 'only root runs PostgreSQL as another OS user' },
  () => {
    before(async () => {
      postgresUser = (await postgresOsUser()) as OsUser;
      const closed = await mkdtemp(join(tmpdir(), 'txoutbox-closed-')); // mode 0700, like root's home
      cleanup.push(closed);
      const installed = await installedBinaries();
      // Hard links: the same files, reachable only through the closed directory.
      await promisify(execFile)('cp', ['-al', installed.binaries.dir, join(closed, 'native')]);
      // A version no real package has, so the copy this test makes is its own.
      closedInstall = { binaries: binariesIn(join(closed, 'native')), version: `0.0.0-test.${process.pid}` };
    });

    after(async () => {
      await Promise.all(cleanup.map((dir) => rm(dir, { recursive: true, force: true })));
    });

    test('the binaries are copied once to a directory it can reach, and the server starts from there', async () => {
      assert.equal((await stat(dirname(closedInstall.binaries.dir))).mode & 0o777, 0o700);
      const runnable = await binariesRunnableBy(closedInstall, postgresUser);
      cleanup.push(runnable.dir);
      assert.notEqual(runnable.dir, closedInstall.binaries.dir);
      assert.equal(dirname(runnable.dir), tmpdir());
      assert.equal((await stat(runnable.dir)).uid, 0, 'root owns the copy');

      assert.deepEqual(await binariesRunnableBy(closedInstall, postgresUser), runnable, 'the second start reuses the copy');

      const server = await startEmbeddedPostgres({ postgresDir: runnable.dir });
      try {
        const client = new pg.Client({ connectionString: server.connectionString });
        await client.connect();
        const { rows } = await client.query<{ user: string }>('SELECT current_user AS user');
        await client.end();
        assert.equal(rows[0]?.user, 'postgres');
      } finally {
        await server.stop();
      }
    });

    test('a directory at the copy name that another user owns is never run: typed error naming it', async () => {
      const planted = { ...closedInstall, version: `0.0.0-planted.${process.pid}` };
      const copyName = join(tmpdir(), `txoutbox-postgres-${planted.version}-${process.platform}-${process.arch}`);
      await mkdir(join(copyName, 'bin'), { recursive: true });
      cleanup.push(copyName);
      await writeFile(join(copyName, 'bin', 'postgres'), '#!/bin/sh\n', { mode: 0o755 });
      await writeFile(join(copyName, 'somefile'), 'not empty\n');
      await chown(copyName, postgresUser.uid, postgresUser.gid);
      await chmod(copyName, 0o777);
      await assert.rejects(
        binariesRunnableBy(planted, postgresUser),
        (error: unknown) =>
          error instanceof EmbeddedPostgresError && error.message.includes(copyName) && /delete it/.test(error.message),
      );
    });

    test('a symlink at the copy name is refused by name, even to a copy root trusts', async () => {
      // The copy's name in the shared /tmp is predictable: another user may plant a symlink there,
      // aimed at a root-owned copy while root checks it and repointed before root runs it.
      const planted = { ...closedInstall, version: `0.0.0-symlink.${process.pid}` };
      const target = await mkdtemp(join(tmpdir(), 'txoutbox-symlink-target-'));
      cleanup.push(target);
      await chmod(target, 0o755);
      await mkdir(join(target, 'bin'), { mode: 0o755 });
      await writeFile(join(target, 'bin', 'postgres'), '#!/bin/sh\n', { mode: 0o755 });
      await writeFile(join(target, '.txoutbox-complete'), `${planted.version}\n`);
      const copyName = join(tmpdir(), `txoutbox-postgres-${planted.version}-${process.platform}-${process.arch}`);
      await symlink(target, copyName);
      cleanup.push(copyName);
      await lchown(copyName, postgresUser.uid, postgresUser.gid);
      await assert.rejects(
        binariesRunnableBy(planted, postgresUser),
        (error: unknown) =>
          error instanceof EmbeddedPostgresError &&
          error.message.includes(copyName) &&
          /symbolic link/.test(error.message) &&
          /delete it/.test(error.message),
      );
    });

    test('under umask 077 (binaries installed 0700/0600) the copy is opened to the postgres user and the server starts', async () => {
      // A child process: the umask is process-wide. It installs the binaries as npm does under
      // that umask (cp without -p: 0700 directories, 0600 libraries), copies and starts them.
      const version = `0.0.0-umask.${process.pid}`;
      const closed = await mkdtemp(join(tmpdir(), 'txoutbox-umask-'));
      cleanup.push(closed, join(tmpdir(), `txoutbox-postgres-${version}-${process.platform}-${process.arch}`));
      const source = resolve('src/embedded');
      const script = join(closed, 'umask-child.mts');
      await writeFile(
        script,
        `import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startEmbeddedPostgres } from '${source}/index.js';
import { binariesIn, binariesRunnableBy, installedBinaries } from '${source}/postgres-binaries.js';
import { postgresOsUser } from '${source}/postgres-os-user.js';
process.umask(0o077);
const installed = await installedBinaries();
await promisify(execFile)('cp', ['-r', installed.binaries.dir, '${closed}/native']);
const user = await postgresOsUser();
const runnable = await binariesRunnableBy({ binaries: binariesIn('${closed}/native'), version: '${version}' }, user);
// Resolves only once the server accepts connections.
const server = await startEmbeddedPostgres({ postgresDir: runnable.dir });
await server.stop();
process.stdout.write('started');
`,
      );
      const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const code = await new Promise<number | null>((done) => child.on('close', done));
      assert.equal(code, 0, output);
      assert.match(output, /started/);
    });

    test('a postgresDir it cannot enter is a typed error naming the closed directory and the fix', async () => {
      await assert.rejects(
        startEmbeddedPostgres({ postgresDir: closedInstall.binaries.dir }),
        (error: unknown) =>
          error instanceof EmbeddedPostgresError &&
          error.message.includes(`cannot enter ${dirname(closedInstall.binaries.dir)}`) &&
          /chmod o\+x/.test(error.message),
      );
    });
  },
);
