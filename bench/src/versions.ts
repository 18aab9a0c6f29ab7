import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

/** The installed version of `name` as resolved from `fromUrl` (defaults to the bench's own sources). */
export function packageVersion(name: string, fromUrl: string = import.meta.url): string {
  const require = createRequire(fromUrl);
  for (const candidate of [`${name}/package.json`]) {
    try {
      const pkg = JSON.parse(readFileSync(require.resolve(candidate), 'utf8')) as { version?: string };
      return pkg.version ?? '?';
    } catch {
      // try resolving the main entry and walking up instead
    }
  }
  try {
    let dir = require.resolve(name);
    for (let i = 0; i < 6; i += 1) {
      dir = dir.slice(0, dir.lastIndexOf('/'));
      try {
        const pkg = JSON.parse(readFileSync(`${dir}/package.json`, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === name) return pkg.version ?? '?';
      } catch {
        // keep walking
      }
    }
  } catch {
    // not installed
  }
  return 'not installed';
}
