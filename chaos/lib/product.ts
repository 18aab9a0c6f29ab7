/**
 * The txoutbox under test, loaded from a source tree: /work/main by default, or another checkout
 * (`--product-root`, e.g. a `git worktree` of the commit before a fix) so one harness measures both.
 * Everything that is the product comes from that tree: the library (its `src/`, run through tsx),
 * the `txoutbox run` command, and the `pg` it depends on. The harness's own plumbing (embedded
 * server, admin connections, proxy) comes from this checkout.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import type pg from 'pg';

import type * as Txoutbox from '../../src/index.js';
import type * as TxoutboxRelay from '../../src/relay/index.js';

export interface Product {
  readonly root: string;
  readonly txoutbox: typeof Txoutbox;
  /** node-postgres as the product's tree resolves it. */
  readonly pg: typeof pg;
}

/** This checkout: the default product and the home of the harness. */
export const HARNESS_ROOT = resolve(import.meta.dirname, '..', '..');

export function checkProductRoot(root: string): string | undefined {
  for (const path of ['src/index.ts', 'src/cli/main.ts', 'node_modules/pg/package.json', 'node_modules/tsx/package.json']) {
    if (!existsSync(join(root, path))) return `${root} has no ${path} (a txoutbox checkout after npm ci?)`;
  }
  return undefined;
}

export async function loadProduct(root: string): Promise<Product> {
  const txoutbox = (await import(pathToFileURL(join(root, 'src', 'index.ts')).href)) as typeof Txoutbox;
  const require = createRequire(join(root, 'package.json'));
  return { root, txoutbox, pg: require('pg') as typeof pg };
}

/**
 * The product's `txoutbox/relay` (its sinks, which load their client libraries from the product's
 * node_modules). Only relay workers load it: a tree from before the relay still runs the rest.
 */
export async function loadRelay(root: string): Promise<typeof TxoutboxRelay> {
  return (await import(pathToFileURL(join(root, 'src', 'relay', 'index.ts')).href)) as typeof TxoutboxRelay;
}

/** `<short sha>`, plus a note when src/ has uncommitted changes: a result names the code it ran. */
export function productCommit(root: string): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: root, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${commit} + uncommitted src/ changes` : commit;
  } catch {
    return 'unknown';
  }
}
