#!/usr/bin/env node
/**
 * `npm run build`: the published dist/ (architecture/packaging.md).
 *
 *   dist/**        ESM, every file of src/ (the library, the CLI, the runner)
 *   dist/cjs/**    CommonJS, the library entry points and what they import (tsconfig.cjs.json),
 *                  marked by dist/cjs/package.json {"type":"commonjs"}
 *
 * Each with its own .d.ts, so TypeScript reads the declarations in the format the runtime loads.
 * No source maps: they would point into src/, which is not published.
 *
 * `stagePackage()` builds into a fresh temporary directory beside a copy of package.json, README
 * and LICENSE, for the checks that pack the package (check-package.mjs, pack-smoke.mjs): they never
 * rewrite the checkout's dist/ under a test run or a build of someone else's.
 */
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = join(root, 'node_modules/typescript/bin/tsc');

function run(project, outDir) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [tsc, '-p', project, '--outDir', outDir], { cwd: root, stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`tsc -p ${project} exited with ${code}`))));
  });
}

export async function buildPackage(distDir = join(root, 'dist')) {
  await rm(distDir, { recursive: true, force: true });
  // The two passes share nothing but src/: run them side by side.
  await Promise.all([run('tsconfig.build.json', distDir), run('tsconfig.cjs.json', join(distDir, 'cjs'))]);
  await mkdir(join(distDir, 'cjs'), { recursive: true });
  await writeFile(join(distDir, 'cjs/package.json'), `${JSON.stringify({ type: 'commonjs' })}\n`);
}

/** A directory holding what `npm pack` publishes, built from the checkout's src/. Caller removes it. */
export async function stagePackage() {
  const dir = await mkdtemp(join(tmpdir(), 'txoutbox-stage-'));
  await buildPackage(join(dir, 'dist'));
  await Promise.all(['package.json', 'README.md', 'LICENSE'].map((file) => copyFile(join(root, file), join(dir, file))));
  return dir;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await buildPackage();
