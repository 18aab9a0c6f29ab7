// `npm run bench` runs the compiled library (dist/, as users do; see src/library.ts): build it
// from the current sources first, so a run never measures a stale dist/.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const result = spawnSync(npm, ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
if (result.status !== 0) {
  console.error('bench: `npm run build` failed; fix the type errors above (the bench runs the compiled dist/).');
  process.exit(result.status ?? 1);
}
