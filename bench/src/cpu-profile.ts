/** `--cpu-profile <dir>`: a V8 CPU profile of each measured txoutbox phase (open in Chrome DevTools). */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';

export async function profiled<T>(dir: string | undefined, name: string, work: () => Promise<T>): Promise<T> {
  if (dir === undefined) return await work();
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  try {
    return await work();
  } finally {
    const { profile } = await session.post('Profiler.stop');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${name}.cpuprofile`), JSON.stringify(profile));
    session.disconnect();
  }
}

/**
 * A script's URL in a profile, short: from its package (`@opentelemetry/core/build/src/…`) or
 * from this repository's `src/` or `dist/`. Matched from `node_modules/` first, so a package's own
 * `src/` does not hide its name.
 */
export function shortPath(url: string): string {
  const packaged = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\/(.*)$/.exec(url);
  if (packaged !== null) return `${packaged[1]}/${packaged[2]}`;
  return url.replace(/^.*\/(src|dist)\//, '$1/');
}
