#!/usr/bin/env node
/**
 * The package's public entry points, and the package.json fields generated from them: `exports`,
 * `main`, `types` and `typesVersions` (architecture/packaging.md).
 *
 *   node scripts/package-entry-points.mjs          check package.json and the tree (in `npm run lint`)
 *   node scripts/package-entry-points.mjs --write  rewrite those fields from ENTRY_POINTS
 *   node scripts/package-entry-points.mjs --built  print the subpaths whose files exist in dist/
 *
 * Every entry point has an ESM build (dist/…, "import") and a CommonJS build (dist/cjs/…,
 * "require", whose package.json says {"type":"commonjs"}), each with its own declarations, so a
 * CommonJS TypeScript project (NestJS's `module: commonjs`) and an ESM one both get types in their
 * own module format. `typesVersions` serves TypeScript's `node10` resolution, which ignores
 * `exports`.
 *
 * The check fails when an `src/adapters/<name>/index.ts` exists that is not listed here, when a
 * listed non-adapter entry's source is missing, when package.json differs from what --write would
 * write, or when tsconfig.cjs.json does not compile a listed entry: a new entry point cannot be
 * forgotten in one of the places it must be named.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Subpath → source file under src/ (without `.ts`). Adapters may land after this list names them. */
export const ENTRY_POINTS = {
  '.': 'index',
  './embedded': 'embedded/index',
  './prometheus': 'prometheus/index',
  './opentelemetry': 'opentelemetry/index',
  './dashboard': 'dashboard/index',
  './relay': 'relay/index',
  './testing': 'testing/index',
  './postgres': 'adapters/postgres/index',
  './kysely': 'adapters/kysely/index',
  './drizzle': 'adapters/drizzle/index',
  './prisma': 'adapters/prisma/index',
  './knex': 'adapters/knex/index',
  './typeorm': 'adapters/typeorm/index',
  './mikro-orm': 'adapters/mikro-orm/index',
  './sequelize': 'adapters/sequelize/index',
};

export function generatedFields() {
  const exports = {};
  const typesVersions = {};
  for (const [subpath, source] of Object.entries(ENTRY_POINTS)) {
    exports[subpath] = {
      import: { types: `./dist/${source}.d.ts`, default: `./dist/${source}.js` },
      require: { types: `./dist/cjs/${source}.d.ts`, default: `./dist/cjs/${source}.js` },
    };
    if (subpath !== '.') typesVersions[subpath.slice(2)] = [`./dist/cjs/${source}.d.ts`];
  }
  exports['./package.json'] = './package.json';
  return {
    main: './dist/cjs/index.js',
    types: './dist/cjs/index.d.ts',
    exports,
    typesVersions: { '*': typesVersions },
  };
}

/** Subpaths whose ESM and CommonJS builds both exist in `distDir` (what attw can check today). */
export function builtEntryPoints(distDir = join(root, 'dist')) {
  return Object.entries(ENTRY_POINTS)
    .filter(([, source]) => existsSync(join(distDir, `${source}.js`)) && existsSync(join(distDir, 'cjs', `${source}.js`)))
    .map(([subpath]) => subpath);
}

function problems() {
  const found = [];
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  for (const [field, value] of Object.entries(generatedFields())) {
    if (JSON.stringify(pkg[field]) !== JSON.stringify(value)) {
      found.push(`package.json "${field}" differs from ENTRY_POINTS. Fix: node scripts/package-entry-points.mjs --write`);
    }
  }
  const listed = new Set(Object.values(ENTRY_POINTS));
  const adaptersDir = join(root, 'src/adapters');
  if (existsSync(adaptersDir)) {
    for (const name of readdirSync(adaptersDir)) {
      if (existsSync(join(adaptersDir, name, 'index.ts')) && !listed.has(`adapters/${name}/index`)) {
        found.push(
          `src/adapters/${name}/index.ts is not an entry point. Fix: add './${name}' to ENTRY_POINTS in scripts/package-entry-points.mjs, then --write`,
        );
      }
    }
  }
  const cjsInclude = JSON.parse(readFileSync(join(root, 'tsconfig.cjs.json'), 'utf8')).include;
  for (const source of listed) {
    const adapter = source.startsWith('adapters/');
    if (!adapter && !existsSync(join(root, 'src', `${source}.ts`)))
      found.push(`src/${source}.ts is listed in ENTRY_POINTS but missing`);
    if (!adapter && !cjsInclude.includes(`src/${source}.ts`)) found.push(`tsconfig.cjs.json "include" lacks src/${source}.ts`);
  }
  if (!cjsInclude.includes('src/adapters/*/index.ts')) found.push('tsconfig.cjs.json "include" lacks src/adapters/*/index.ts');
  return found;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--write')) {
    const path = join(root, 'package.json');
    const pkg = JSON.parse(readFileSync(path, 'utf8'));
    const fields = generatedFields();
    // Keep package.json's key order; new fields go after "files".
    const out = {};
    for (const [key, value] of Object.entries(pkg)) {
      if (key in fields) continue;
      out[key] = value;
      if (key === 'files') Object.assign(out, fields);
    }
    writeFileSync(path, `${JSON.stringify(out, null, 2)}\n`);
  } else if (process.argv.includes('--built')) {
    console.log(builtEntryPoints().join(' '));
  } else {
    const found = problems();
    for (const problem of found) console.error(`package entry points: ${problem}`);
    process.exit(found.length === 0 ? 0 : 1);
  }
}
