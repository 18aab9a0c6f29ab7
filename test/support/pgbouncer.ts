/**
 * A real pgbouncer (Debian's package, installed by scripts/ensure-pgbouncer.sh) in front of the
 * test run's PostgreSQL, in transaction mode: its own ini file in a temp dir, a free 127.0.0.1
 * port, and the server's own user and password (the embedded server's `postgres` with SCRAM, or
 * DATABASE_URL's). Stopped by close() (SIGTERM, SIGKILL after 10 s: server-process.ts), and killed
 * when the test process exits whatever happened.
 *
 *   const bouncer = await startPgBouncer();
 *   if ('skip' in bouncer) return t.skip(bouncer.skip);   // never in CI: there it rejects
 *   t.after(() => bouncer.close());
 *   new Outbox({ connectionString: bouncer.urlFor(db.url), preparedStatements: false, … });
 */
import { execFile } from 'node:child_process';
import { chownSync, writeFileSync } from 'node:fs';
import { chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import pg from 'pg';

import { postgresOsUser } from '../../src/embedded/postgres-os-user.js';
import { serverUrl } from './database.js';
import { ensureServerBinary, ServerProcess } from './server-process.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/ensure-pgbouncer.sh', import.meta.url));

let ensured: Promise<{ path: string } | { skip: string }> | undefined;

export interface PgBouncerOptions {
  /** Server connections per (database, user) pair. @default 20 */
  readonly defaultPoolSize?: number;
  /** PgBouncer ≥ 1.21's protocol-level prepared statements per server connection; 0 = off. @default 0 */
  readonly maxPreparedStatements?: number;
  /** The server to front (its host, port, user and password). @default the test run's (DATABASE_URL or embedded) */
  readonly serverUrl?: string;
  /**
   * Seconds PgBouncer waits after a failed server login before it tries again. Its own default (15)
   * holds every client for 15 s after a server restart; a production config lowers it. @default PgBouncer's
   */
  readonly serverLoginRetrySeconds?: number;
}

export interface PgBouncer {
  readonly port: number;
  /** Its process id (bench/src/probes/pgbouncer.ts reads its CPU time). */
  readonly pid: number | undefined;
  /** `pgbouncer --version`'s number (`1.18.0`). */
  readonly version: string;
  /** `url` (a database of the test server) with pgbouncer's host and port instead. */
  urlFor(url: string): string;
  /**
   * Runs a command on PgBouncer's admin console (`PAUSE`, `RESUME`, `KILL db`, `SHOW POOLS`…) as the
   * server's user, which the ini lists in `admin_users`; its rows.
   */
  admin(command: string): Promise<Record<string, unknown>[]>;
  /** Stops the process, its files kept: SIGTERM is PgBouncer's shutdown (immediate before 1.23), `'SIGKILL'` a crash. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Starts it again after stop(), on the same port with the same ini. */
  restart(): Promise<void>;
  /** Stops pgbouncer (bounded) and removes its ini, auth file and log. */
  close(): Promise<void>;
}

/** `"name"` for pgbouncer's auth_file: a double quote inside is doubled. */
function quoted(value: string): string {
  return `"${value.replaceAll('"', '""')}"`;
}

function iniFile(server: URL, port: number, dir: string, options: PgBouncerOptions, version: string): string {
  const password = decodeURIComponent(server.password);
  const maxPrepared = options.maxPreparedStatements ?? 0;
  return [
    '[databases]',
    // Any database the client names, on the test server: each test file has its own.
    `* = host=${server.hostname} port=${server.port === '' ? '5432' : server.port}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    // The client proves the password pgbouncer knows in plain text, which pgbouncer then uses for
    // its own SCRAM login to the server. Without a password (a trust server), no client auth either.
    `auth_type = ${password === '' ? 'trust' : 'scram-sha-256'}`,
    `auth_file = ${join(dir, 'userlist.txt')}`,
    'pool_mode = transaction',
    `default_pool_size = ${options.defaultPoolSize ?? 20}`,
    // The admin console (database `pgbouncer`): PAUSE, RESUME, KILL, SHOW, as the server's own user.
    `admin_users = ${decodeURIComponent(server.username)}`,
    ...(options.serverLoginRetrySeconds === undefined ? [] : [`server_login_retry = ${options.serverLoginRetrySeconds}`]),
    'max_client_conn = 1000',
    // What production configs set for clients that send it (node-postgres sends none by default).
    'ignore_startup_parameters = extra_float_digits',
    ...(maxPrepared > 0 && atLeast(version, [1, 21]) ? [`max_prepared_statements = ${maxPrepared}`] : []),
    'pidfile =',
    'logfile =',
    'log_connections = 0',
    'log_disconnections = 0',
    'server_check_delay = 0',
    '',
  ].join('\n');
}

/** Sync: ServerProcess calls `args` right before its spawn, and the port is only known there. */
function writeIni(path: string, text: string, osUser: { uid: number; gid: number } | undefined): void {
  writeFileSync(path, text, { mode: 0o600 });
  if (osUser !== undefined) chownSync(path, osUser.uid, osUser.gid);
}

function versionOf(binary: string): Promise<string> {
  return new Promise((resolve) => {
    execFile(binary, ['--version'], (_error, stdout) => {
      resolve(/(\d+\.\d+(?:\.\d+)?)/.exec(stdout)?.[1] ?? '0.0');
    });
  });
}

/** `1.18.0` >= [1, 21]? */
export function atLeast(version: string, [major, minor]: readonly [number, number]): boolean {
  const [a = 0, b = 0] = version.split('.').map((part) => Number.parseInt(part, 10));
  return a > major || (a === major && b >= minor);
}

/**
 * Starts a pgbouncer in transaction mode in front of DATABASE_URL's server. `{ skip }` when it
 * cannot be installed outside CI; in CI that rejects instead (ensureServerBinary).
 */
export async function startPgBouncer(options: PgBouncerOptions = {}): Promise<PgBouncer | { skip: string }> {
  ensured ??= ensureServerBinary(SCRIPT, 'pgbouncer');
  const binary = await ensured;
  if ('skip' in binary) return binary;
  const version = await versionOf(binary.path);
  const server = new URL(options.serverUrl ?? serverUrl());
  const dir = await mkdtemp(join(tmpdir(), 'txoutbox-pgbouncer-'));
  // pgbouncer refuses to run as root: then it runs as the embedded server's OS user, which must
  // read its files (the auth file holds the password: 0600, that user's only).
  const osUser = userInfo().uid === 0 ? await postgresOsUser() : undefined;
  const user = decodeURIComponent(server.username);
  await writeFile(join(dir, 'userlist.txt'), `${quoted(user)} ${quoted(decodeURIComponent(server.password))}\n`, {
    mode: 0o600,
  });
  let started: ServerProcess | undefined;
  try {
    if (osUser !== undefined) {
      await chown(dir, osUser.uid, osUser.gid);
      await chown(join(dir, 'userlist.txt'), osUser.uid, osUser.gid);
    }
    await chmod(dir, 0o700);
    started = await ServerProcess.start({
      name: 'pgbouncer',
      binary: binary.path,
      args: (port) => {
        writeIni(join(dir, 'pgbouncer.ini'), iniFile(server, port, dir, options, version), osUser);
        return [...(osUser === undefined ? [] : ['-u', 'postgres']), join(dir, 'pgbouncer.ini')];
      },
      ready: /process up|listening on 127\.0\.0\.1/,
    });
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const process = started;
  const urlFor = (url: string): string => {
    const parsed = new URL(url);
    parsed.hostname = '127.0.0.1';
    parsed.port = String(process.port);
    return parsed.toString();
  };
  const adminUrl = new URL(server.toString());
  adminUrl.pathname = '/pgbouncer';
  return {
    port: process.port,
    // The running process's (a restart() starts another).
    get pid() {
      return process.pid;
    },
    version,
    urlFor,
    async admin(command) {
      // Bounded: PAUSE waits for every server transaction to finish, and one may be stuck.
      const adminClient = new pg.Client({
        connectionString: urlFor(adminUrl.toString()),
        connectionTimeoutMillis: 10_000,
        query_timeout: 30_000,
      });
      adminClient.on('error', () => undefined);
      try {
        await adminClient.connect();
        // The admin console speaks the simple protocol only: a query without parameters.
        return (await adminClient.query<Record<string, unknown>>(command)).rows;
      } finally {
        await adminClient.end().catch(() => undefined);
      }
    },
    stop: (signal) => process.stop(signal),
    restart: () => process.restart(),
    async close() {
      await process.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
