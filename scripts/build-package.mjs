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
 */
import { spawn } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = join(root, 'node_modules/typescript/bin/tsc');

function run(project) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [tsc, '-p', project], { cwd: root, stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`tsc -p ${project} exited with ${code}`))));
  });
}

await rm(join(root, 'dist'), { recursive: true, force: true });
// The two passes share nothing but src/: run them side by side.
await Promise.all([run('tsconfig.build.json'), run('tsconfig.cjs.json')]);
await mkdir(join(root, 'dist/cjs'), { recursive: true });
await writeFile(join(root, 'dist/cjs/package.json'), `${JSON.stringify({ type: 'commonjs' })}\n`);
