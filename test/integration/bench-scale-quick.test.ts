/**
 * `npm run bench:scale -- --quick` runs end to end: embedded PostgreSQL (DATABASE_URL unset, as the
 * bench ships), every scale workload at tiny sizes (backlog drains, a 1,000-queue subscription, W1
 * by producers, a 20-second soak and its autovacuum-off variant), a results JSON, a report and the
 * SVG charts, also into `--charts <dir>`. The numbers are not checked (timing lives in bench/, not
 * in tests); that every workload produced its runs, without failures, duplicates or losses, and
 * that every chart is there, is.
 *
 * The scale bench needs only the root package's dependencies (no pg-boss / graphile-worker), so
 * unlike bench-quick.test.ts it has nothing to install and never skips.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

interface Results {
  mode: string;
  drains: {
    workload: string;
    queues: number;
    label: string;
    system: string;
    messages: number;
    msgsPerSec: number;
    duplicates: number;
    note?: string;
  }[];
  publishes: { system: string; producers: number; losses: number; duplicates: number; msgsPerSec: number }[];
  soaks: { variant: string; published: number; handled: number; samples: unknown[]; note?: string; autovacuumSettings: string }[];
  failures: unknown[];
  sizes: { drainMeasured: number };
}

const CHARTS = [
  'scale-drain-by-backlog.svg',
  'scale-claim-by-backlog.svg',
  'scale-claim-by-queues.svg',
  'scale-drain-by-queues.svg',
  'scale-publish-by-producers.svg',
  'scale-soak-rates.svg',
  'scale-soak-p99.svg',
  'scale-soak-sizes.svg',
  'scale-soak-dead-tuples.svg',
  'scale-soak-claim.svg',
];

function benchEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.DATABASE_URL; // the bench starts its own embedded server, fsync on
  delete env.NODE_TEST_CONTEXT;
  return env;
}

test(
  'npm run bench:scale -- --quick runs every scale workload and writes results, a report and the charts',
  { timeout: 150_000 },
  async (t) => {
    const out = mkdtempSync(join(tmpdir(), 'txoutbox-bench-scale-'));
    try {
      const started = Date.now();
      const { stdout } = await promisify(execFile)(
        'npm',
        ['run', 'bench:scale', '--', '--quick', '--out', out, '--charts', join(out, 'committed')],
        { env: benchEnv(), maxBuffer: 16 * 1024 * 1024, timeout: 140_000 },
      );
      const files = readdirSync(out).filter((f) => f.startsWith('scale-quick-') && f.endsWith('.json'));
      assert.equal(files.length, 1, `one results JSON in ${out}; got ${files.join(', ')}\n${stdout}`);
      const results = JSON.parse(readFileSync(join(out, files[0]!), 'utf8')) as Results;
      assert.equal(results.mode, 'quick');
      assert.deepEqual(results.failures, [], 'no workload failed');

      const backlog = results.drains.filter((d) => d.workload === 'a');
      assert.deepEqual(
        [...new Set(backlog.map((d) => `${d.system}: ${d.label}`))].length,
        5,
        'a: three backlogs for txoutbox, two for raw SQL',
      );
      const queues = results.drains.filter((d) => d.workload === 'b').map((d) => d.queues);
      assert.ok(queues.includes(1) && queues.includes(1000), `b: 1 and 1,000 queues, got ${queues.join(', ')}`);
      for (const drain of results.drains) {
        assert.equal(drain.note, undefined, `${drain.label} ${drain.system}: finished`);
        assert.equal(
          drain.messages,
          results.sizes.drainMeasured,
          `${drain.label} ${drain.system}: every measured message handled`,
        );
        assert.equal(drain.duplicates, 0, `${drain.label} ${drain.system}: no duplicates`);
        assert.ok(drain.msgsPerSec > 0);
      }

      assert.deepEqual([...new Set(results.publishes.map((p) => p.producers))], [1, 8, 64], 'c: 1, 8 and 64 producers');
      assert.deepEqual([...new Set(results.publishes.map((p) => p.system))], ['txoutbox', 'raw', 'raw+notify']);
      for (const run of results.publishes) {
        assert.equal(run.losses + run.duplicates, 0, `W1 ${run.system} ×${run.producers}: every message once`);
      }

      assert.deepEqual(
        results.soaks.map((s) => s.variant),
        ['calibrate', 'soak', 'autovacuum off'],
      );
      for (const soak of results.soaks) {
        assert.equal(soak.note, undefined, `${soak.variant}: everything published was handled`);
        assert.equal(soak.handled, soak.published, `${soak.variant}: handled every published message`);
        assert.ok(soak.published > 0);
      }
      const soak = results.soaks.find((s) => s.variant === 'soak')!;
      assert.ok(soak.samples.length >= 5, `the 20 s soak is sampled, got ${soak.samples.length} samples`);
      assert.match(soak.autovacuumSettings, /autovacuum_vacuum_scale_factor=0/, "the library's autovacuumDdl() is applied");
      assert.match(results.soaks.find((s) => s.variant === 'autovacuum off')!.autovacuumSettings, /autovacuum_enabled=off/);

      const svgDir = readdirSync(out).find((f) => f.startsWith('scale-quick-') && !f.includes('.'))!;
      for (const dir of [join(out, svgDir), join(out, 'committed')]) {
        assert.deepEqual(readdirSync(dir).sort(), [...CHARTS].sort(), `every chart in ${dir}`);
        for (const chart of CHARTS) {
          const svg = readFileSync(join(dir, chart), 'utf8');
          assert.match(
            svg,
            /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^>]*>[\s\S]*<\/svg>\n$/,
            `${chart} is one svg element`,
          );
          assert.doesNotMatch(svg, /NaN|Infinity|undefined/, `${chart}: every value placed`);
        }
      }
      const report = readFileSync(join(out, files[0]!.replace(/\.json$/, '.md')), 'utf8');
      for (const heading of ['### a.', '### b.', '### c.', '### d.'])
        assert.ok(report.includes(heading), `report has ${heading}`);
      assert.match(report, new RegExp(`${svgDir}/scale-soak-dead-tuples\\.svg`), 'the report links its charts');
      t.diagnostic(`bench:scale --quick took ${((Date.now() - started) / 1000).toFixed(1)} s`);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  },
);

test('bench:scale refuses bad options before starting anything, naming the option and the value', () => {
  const cases: [string[], RegExp][] = [
    [['--only', 'a,z'], /--only: unknown workload z/],
    [['--reps', '0'], /--reps: expected a positive integer, got 0/],
    [['--soak-minutes', 'ten'], /--soak-minutes: expected a number of minutes above 0 \(up to 1440\), got ten/],
    [['--soak-minutes', '0'], /--soak-minutes: .* got 0/],
    [['--fsync', 'off'], /Unknown option '--fsync'/],
  ];
  for (const [args, message] of cases) {
    const result = spawnSync(process.execPath, ['--import', 'tsx', join('bench', 'src', 'scale', 'main.ts'), ...args], {
      env: benchEnv(),
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(result.status, 2, `${args.join(' ')} exits 2\n${result.stderr}`);
    assert.match(result.stderr, message);
    assert.match(result.stderr, /npm run bench:scale -- \[options\]/, 'and prints the usage');
  }
});
