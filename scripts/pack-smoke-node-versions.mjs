#!/usr/bin/env node
/**
 * `npm run test:node-versions` (not part of `npm test`: it installs three Node.js builds and takes
 * minutes): scripts/pack-smoke.mjs on every Node.js major package.json's `engines` claims.
 *
 *   node scripts/pack-smoke-node-versions.mjs [majors…]     default: 20 22 24
 *
 * Each Node.js comes from the npm registry only: the `node` package (`npm install node@22`), whose
 * install step fetches the matching `node-<platform>-<arch>` package holding the binary, into
 * $TXOUTBOX_NODE_CACHE_DIR/<major> (default node_modules/.cache/txoutbox-node/<major>), reused by
 * later runs. The checkout is packed once; every Node installs that same tarball. Prints one line
 * per version and exits 1 if any failed; architecture/packaging.md records the last result.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { stagePackage } from './build-package.mjs';

const execFileAsync = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const majors = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['20', '22', '24'];
const cacheRoot = process.env.TXOUTBOX_NODE_CACHE_DIR ?? join(root, 'node_modules/.cache/txoutbox-node');

/** The `node` binary of the newest release of `major`, installed from the npm registry once. */
async function nodeBinary(major) {
  const dir = join(cacheRoot, major);
  const binary = join(dir, 'node_modules/node/bin/node');
  if (!existsSync(binary)) {
    await mkdir(dir, { recursive: true });
    // The `node` package's preinstall fetches the binary package; npm's allowScripts must permit it.
    await writeFile(join(dir, 'package.json'), JSON.stringify({ private: true, allowScripts: { node: true } }));
    await execFileAsync('npm', ['install', `node@${major}`, '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir });
  }
  return binary;
}

function smoke(binary, tarball) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(root, 'scripts/pack-smoke.mjs'), '--node', binary, '--tarball', tarball], {
      stdio: 'inherit',
    });
    child.on('exit', (code) => resolve(code === 0));
  });
}

const packDir = await mkdtemp(join(tmpdir(), 'txoutbox-node-versions-'));
const stage = await stagePackage();
const results = [];
try {
  const { stdout } = await execFileAsync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', packDir], {
    cwd: stage,
  });
  const tarball = join(packDir, JSON.parse(stdout)[0].filename);
  for (const major of majors) {
    const binary = await nodeBinary(major);
    const { stdout: version } = await execFileAsync(binary, ['--version']);
    console.log(`\n## Node.js ${version.trim()} (${binary})`);
    results.push({ version: version.trim(), passed: await smoke(binary, tarball) });
  }
} finally {
  await rm(packDir, { recursive: true, force: true });
  await rm(stage, { recursive: true, force: true });
}
console.log('\n## pack smoke by Node.js version');
for (const { version, passed } of results) console.log(`${passed ? 'passed' : 'FAILED'}  ${version}`);
process.exitCode = results.every((result) => result.passed) ? 0 : 1;
