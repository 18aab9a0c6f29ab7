// `npm run bench` and `npm run lint` start here: installs the bench's own dependencies (pg-boss,
// graphile-worker) on first use, from the committed lock file, so the library's dependencies stay
// clean (lint type-checks bench/, which needs the peers' types). The harness
// itself runs on the root's devDependencies (tsx, pg, prom-client, @opentelemetry/*): run `npm ci`
// at the root first.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const wanted = ['pg-boss', 'graphile-worker'];
const missing = wanted.filter((name) => !existsSync(join(here, 'node_modules', name, 'package.json')));
if (!existsSync(join(here, '..', 'node_modules', 'tsx', 'package.json'))) {
  console.error('bench: the root devDependencies are missing. Fix: run `npm ci` in the repository root first.');
  process.exit(1);
}
if (missing.length > 0) {
  console.error(`bench: installing the bench's dependencies (${missing.join(', ')}) with npm ci …`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const result = spawnSync(npm, ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: here, stdio: 'inherit' });
  if (result.status !== 0) {
    console.error('bench: `npm ci` in bench/ failed; the peers (pg-boss, graphile-worker) cannot run without it.');
    process.exit(result.status ?? 1);
  }
}
