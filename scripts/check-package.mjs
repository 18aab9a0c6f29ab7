#!/usr/bin/env node
/**
 * `npm run check:package` (part of `npm test`): the package as the registry would serve it.
 *
 * Builds into a staging directory, packs it (without running `prepare`), and runs @arethetypeswrong/cli on the tarball
 * for every entry point that is built: ESM and CommonJS consumers, TypeScript's node10 (the
 * `module: commonjs` default), node16 from ESM and from CommonJS, and bundler resolution must all
 * find the types in the format the runtime loads. The entry-point list itself is checked by
 * `scripts/package-entry-points.mjs` (in `npm run lint`).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { stagePackage } from './build-package.mjs';
import { builtEntryPoints } from './package-entry-points.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stage = await stagePackage();
const packDir = mkdtempSync(join(tmpdir(), 'txoutbox-check-package-'));
try {
  const [packed] = JSON.parse(
    execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', packDir], { cwd: stage, encoding: 'utf8' }),
  );
  console.log(`# ${packed.filename}: ${packed.size} bytes packed, ${packed.unpackedSize} unpacked, ${packed.entryCount} files`);
  const attw = join(root, 'node_modules/@arethetypeswrong/cli/dist/index.js');
  execFileSync(
    process.execPath,
    [
      attw,
      join(packDir, packed.filename),
      '--format',
      'table-flipped',
      '--entrypoints',
      ...builtEntryPoints(join(stage, 'dist')),
    ],
    {
      stdio: 'inherit',
    },
  );
} finally {
  rmSync(packDir, { recursive: true, force: true });
  rmSync(stage, { recursive: true, force: true });
}
