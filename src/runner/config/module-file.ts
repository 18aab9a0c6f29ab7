import { statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';

import type { ConfigIssues } from './config-issues.js';

/**
 * The absolute path of a module the config names (a handler, the schemas), relative to the config
 * file's directory; undefined with an issue when it is not a string or no file is there. What the
 * module exports is checked by the child that imports it.
 */
export function moduleFile(
  issues: ConfigIssues,
  path: string,
  value: unknown,
  configDir: string,
  what: string,
): string | undefined {
  const given = issues.string(path, value, { what: `the path of the ${what} (relative to the config file)` });
  if (given === undefined) return undefined;
  const absolute = isAbsolute(given) ? given : resolve(configDir, given);
  if (!statSync(absolute, { throwIfNoEntry: false })?.isFile()) {
    issues.expected(path, `the path of an existing ${what}`, given, `No file at ${absolute}.`);
    return undefined;
  }
  return absolute;
}
