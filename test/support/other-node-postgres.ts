import { createRequire } from 'node:module';
import { dirname } from 'node:path';

import type pg from 'pg';

const require = createRequire(import.meta.url);

/**
 * A second, separate copy of node-postgres' classes (Client, Pool, Query), as an application that
 * bundles its own pg, or has a second version in node_modules, hands txoutbox: same API, classes
 * that are not txoutbox's (`instanceof` says no). Loaded by evicting pg's own files from the
 * require cache for one fresh require, then putting the originals back, so every other import of
 * 'pg' in the process keeps the first copy. Its helpers (pg-pool, pg-protocol, pg-types) stay shared.
 */
export function otherNodePostgres(): typeof pg {
  const libDir = dirname(require.resolve('pg'));
  const ours = (key: string): boolean => key.startsWith(`${libDir}/`);
  const saved = Object.entries(require.cache).filter(([key]) => ours(key));
  for (const [key] of saved) Reflect.deleteProperty(require.cache, key);
  try {
    return require('pg') as typeof pg;
  } finally {
    for (const key of Object.keys(require.cache)) if (ours(key)) Reflect.deleteProperty(require.cache, key);
    for (const [key, module] of saved) require.cache[key] = module;
  }
}
