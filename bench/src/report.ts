/** Turns the runs into the tables people read: throughput, latency, cost per message, ratios, targets. */
import type { PhaseCost } from './measure.js';
import { renderSeamVariants, seamTargetRows } from './seam-report.js';
import { type Spread, spread } from './stats.js';
import type { WorkloadId } from './systems/system.js';
import { handlerRuns, type Measured, type Sizes } from './workloads.js';

export interface RunRecord extends Partial<Measured> {
  readonly workload: WorkloadId;
  readonly variant: string;
  readonly system: string;
  readonly rep: number;
  readonly msgsPerSec?: number;
  readonly statementsPerMsg?: number | null;
  readonly walBytesPerMsg?: number;
  readonly cost?: PhaseCost;
  /** Machine busy share just before the run (after waiting up to 20 s for quiet). */
  readonly busyBefore?: number | null;
  readonly error?: string;
}

export interface BenchResults {
  readonly mode: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly machine: Readonly<Record<string, string | number>>;
  readonly postgres: { version: string; embedded: boolean; statStatements: boolean; settings: Readonly<Record<string, string>> };
  readonly commit: string;
  readonly sizes: Sizes;
  readonly systems: readonly { id: string; label: string; version: string; tuning: string; skips: object }[];
  readonly skipped: readonly { workload: WorkloadId; system: string; reason: string }[];
  readonly openTelemetry: string;
  readonly runner: string;
  readonly runs: readonly RunRecord[];
}

interface Group {
  readonly runs: RunRecord[];
  readonly rate: Spread | null;
  readonly statements: number | null;
  readonly wal: number | null;
  readonly duplicates: number;
  readonly losses: number;
  /** `early`: handler starts before the publisher's COMMIT call returned, summed over runs (counted as 0 ms). */
  readonly latency: { p50: number; p95: number; p99: number; max: number; early: number; measured: number } | null;
  readonly errors: number;
  /** Runs with over 0.5 cores of CPU used by neither the bench process nor PostgreSQL. */
  readonly shared: number;
}

/** A run that counts in medians and ratios: it did not fail and carries no note (a timeout, a runner that ignored SIGTERM, dropped spans). */
function counts(run: RunRecord): boolean {
  return run.error === undefined && run.note === undefined;
}

function group(runs: readonly RunRecord[]): Group {
  const ok = runs.filter(counts);
  const med = (values: number[]): number | null => spread(values)?.median ?? null;
  const latencies = ok.flatMap((r) => (r.latencyMs === undefined ? [] : [r.latencyMs]));
  return {
    runs: [...runs],
    rate: spread(ok.flatMap((r) => (r.msgsPerSec === undefined ? [] : [r.msgsPerSec]))),
    statements: med(
      ok.flatMap((r) => (r.statementsPerMsg === undefined || r.statementsPerMsg === null ? [] : [r.statementsPerMsg])),
    ),
    wal: med(ok.flatMap((r) => (r.walBytesPerMsg === undefined ? [] : [r.walBytesPerMsg]))),
    duplicates: runs.reduce((sum, r) => sum + (r.duplicates ?? 0), 0),
    losses: runs.reduce((sum, r) => sum + (r.losses ?? 0), 0),
    latency:
      latencies.length === 0
        ? null
        : {
            p50: med(latencies.map((l) => l.p50)) ?? Number.NaN,
            p95: med(latencies.map((l) => l.p95)) ?? Number.NaN,
            p99: med(latencies.map((l) => l.p99)) ?? Number.NaN,
            max: Math.max(...latencies.map((l) => l.max)),
            early: latencies.reduce((sum, l) => sum + l.negative, 0),
            measured: ok.reduce((sum, r) => sum + (r.latencyMs === undefined ? 0 : (r.messages ?? 0)), 0),
          },
    errors: runs.length - ok.length,
    shared: runs.filter((r) => (r.cost?.otherCpu ?? 0) > 0.5).length,
  };
}

const rate = (value: number): string => (value >= 10_000 ? `${(value / 1000).toFixed(1)}k` : `${(value / 1000).toFixed(2)}k`);
const ms = (value: number): string => value.toFixed(2);

function rateCell(g: Group | undefined): string {
  if (g === undefined) return '—';
  if (g.rate === null) return g.errors > 0 ? `failed (${g.errors})` : '—';
  const range = g.runs.length > 1 ? ` (${rate(g.rate.min)}–${rate(g.rate.max)})` : '';
  return `**${rate(g.rate.median)}**${range}${g.errors > 0 ? ` ⚠${g.errors} failed` : ''}${g.shared > 0 ? ` ⚑${g.shared}` : ''}`;
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const lines = [`| ${header.join(' | ')} |`, `| ${header.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`];
  for (const row of rows) lines.push(`| ${row.join(' | ')} |`);
  return lines.join('\n');
}

export function summarize(results: BenchResults): {
  groups: Map<string, Group>;
  variants: { workload: WorkloadId; variant: string }[];
} {
  const keyed = new Map<string, RunRecord[]>();
  const variants: { workload: WorkloadId; variant: string }[] = [];
  for (const run of results.runs) {
    const key = `${run.workload} ${run.variant}|${run.system}`;
    if (!keyed.has(key)) keyed.set(key, []);
    keyed.get(key)?.push(run);
    if (!variants.some((v) => v.workload === run.workload && v.variant === run.variant)) {
      variants.push({ workload: run.workload, variant: run.variant });
    }
  }
  return { groups: new Map([...keyed].map(([key, runs]) => [key, group(runs)])), variants };
}

const PEERS = ['pg-boss', 'graphile'];

/**
 * Median over repetitions of (a's rate ÷ b's rate) in the same repetition. Each repetition runs
 * every system back to back, so pairing cancels the drift of a shared machine between repetitions.
 */
function pairedRatio(a: Group | undefined, b: Group | undefined): number | null {
  if (a === undefined || b === undefined) return null;
  const ratios: number[] = [];
  for (const run of a.runs) {
    const other = b.runs.find((r) => r.rep === run.rep);
    if (run.msgsPerSec === undefined || other?.msgsPerSec === undefined || !counts(run) || !counts(other)) continue;
    ratios.push(run.msgsPerSec / other.msgsPerSec);
  }
  return spread(ratios)?.median ?? null;
}

export function renderReport(results: BenchResults): string {
  const { groups, variants } = summarize(results);
  const systems = results.systems;
  const get = (variant: string, system: string): Group | undefined => groups.get(`${variant}|${system}`);
  const out: string[] = [];
  const pgs = results.postgres;
  out.push(
    `## Results (${results.mode}, ${results.sizes.reps} repetition(s), median (min–max))`,
    '',
    `Machine: ${results.machine.cpus} × ${results.machine.cpuModel}, ${results.machine.memoryGiB} GiB, Linux ${results.machine.kernel}, Node ${results.machine.node}. ` +
      `PostgreSQL ${pgs.version} (${pgs.embedded ? 'embedded' : 'external'}; fsync=${pgs.settings.fsync ?? '?'}, synchronous_commit=${pgs.settings.synchronous_commit ?? '?'}, ` +
      `shared_buffers=${pgs.settings.shared_buffers ?? '?'}×8kB${commitDelayNote(pgs.settings)}). txoutbox at ${results.commit}. ` +
      `Versions: ${systems.map((s) => `${s.label} ${s.version}`).join(', ')}.`,
    '',
    '### Throughput, msgs/s',
    '',
  );
  const throughputVariants = variants.filter((v) => v.workload !== 'W4');
  out.push(
    table(
      ['workload', ...systems.map((s) => s.label)],
      throughputVariants.map((v) => {
        const name = `${v.workload} ${v.variant}`;
        return [name, ...systems.map((s) => rateCell(get(name, s.id)))];
      }),
    ),
  );
  const wake = variants.find((v) => v.workload === 'W4');
  if (wake !== undefined) {
    const name = `${wake.workload} ${wake.variant}`;
    out.push(
      '',
      `### W4 wake latency, commit → handler start, ms (${results.sizes.wakeMessages} msgs at ${results.sizes.wakeRatePerSecond}/s, concurrency ${results.sizes.wakeConcurrency}; medians of the per-run percentiles, max over runs)`,
      '',
      table(
        ['system', 'p50', 'p95', 'p99', 'max', 'started before COMMIT returned'],
        systems.flatMap((s) => {
          const g = get(name, s.id);
          if (g?.latency == null) return [];
          const { p50, p95, p99, max, early, measured } = g.latency;
          return [[s.label, ms(p50), ms(p95), ms(p99), ms(max), `${early} of ${measured}`]];
        }),
      ),
      '',
      'A handler can start before the publishing COMMIT call has returned: the row is visible once the server commits, and a ' +
        'claim already under way (or a NOTIFY) can reach it while the answer is still on its way to the publisher. Those ' +
        'latencies count as 0 ms.',
    );
  }
  out.push(
    '',
    '### Cost per message: statements (pg_stat_statements calls, BEGIN/COMMIT included) · WAL bytes',
    '',
    table(
      ['workload', ...systems.map((s) => s.label)],
      variants.map((v) => {
        const name = `${v.workload} ${v.variant}`;
        return [
          name,
          ...systems.map((s) => {
            const g = get(name, s.id);
            if (g === undefined || g.wal === null) return '—';
            return `${g.statements === null ? '?' : g.statements.toFixed(3)} · ${g.wal.toFixed(0)} B`;
          }),
        ];
      }),
    ),
  );
  out.push(
    '',
    '⚑n: in n of the runs over 0.5 cores went to neither the bench process nor PostgreSQL (kernel softirq and journal threads, exited backends, or another tenant of the host); they are kept in the medians.',
  );
  const integrity = systems.map((s) => {
    const mine = [...groups].filter(([key]) => key.endsWith(`|${s.id}`)).map(([, g]) => g);
    const dup = mine.reduce((sum, g) => sum + g.duplicates, 0);
    const lost = mine.reduce((sum, g) => sum + g.losses, 0);
    return `${s.label} ${dup} duplicates / ${lost} losses`;
  });
  out.push('', `Exactly-once check (every run, every message counted at its handler): ${integrity.join('; ')}.`);

  // Ratios.
  const ratioRows: string[][] = [];
  const x = (value: number | null): string => (value === null ? '—' : `${value.toFixed(2)}×`);
  for (const v of throughputVariants) {
    const name = `${v.workload} ${v.variant}`;
    const mine = get(name, 'txoutbox');
    if (mine?.rate == null || v.workload === 'W5' || v.workload === 'W6') continue;
    const peers = PEERS.flatMap((p) => {
      const value = get(name, p)?.rate?.median;
      return value === undefined ? [] : [{ p, value }];
    }).sort((a, b) => b.value - a.value);
    const best = peers[0];
    ratioRows.push([
      name,
      x(pairedRatio(mine, get(name, 'raw'))),
      x(pairedRatio(mine, get(name, 'raw+notify'))),
      best === undefined ? '—' : `${x(pairedRatio(mine, get(name, best.p)))} (${best.p})`,
    ]);
  }
  if (wake !== undefined) {
    const name = `${wake.workload} ${wake.variant}`;
    const mine = get(name, 'txoutbox')?.latency?.p99;
    const raw = get(name, 'raw+notify')?.latency?.p99;
    const peers = PEERS.flatMap((p) => {
      const value = get(name, p)?.latency?.p99;
      return value === undefined ? [] : [{ p, value }];
    }).sort((a, b) => a.value - b.value);
    const best = peers[0];
    if (mine !== undefined) {
      ratioRows.push([
        `${name} (p99, lower is better)`,
        '—',
        raw === undefined ? '—' : `${(mine / raw).toFixed(2)}×`,
        best === undefined ? '—' : `${(mine / best.value).toFixed(2)}× (${best.p})`,
      ]);
    }
  }
  out.push(
    '',
    '### Headline ratios (txoutbox ÷ …: median of per-repetition ratios; best peer = the faster peer by median)',
    '',
    table(['workload', '÷ raw SQL (the limit)', '÷ raw SQL + NOTIFY', '÷ best peer'], ratioRows),
  );

  // The two wake-up modes of txoutbox (decision 0004), when both ran.
  const modeRows = throughputVariants.flatMap((v) => {
    const name = `${v.workload} ${v.variant}`;
    const ratio = pairedRatio(get(name, 'txoutbox'), get(name, 'txoutbox-in-tx'));
    return ratio === null ? [] : [[name, x(ratio)]];
  });
  if (modeRows.length > 0) {
    out.push(
      '',
      "### Wake-up modes (txoutbox notify: 'after-commit' ÷ notify: 'in-transaction', median of per-repetition ratios)",
      '',
      table(['workload', 'after-commit ÷ in-transaction'], modeRows),
    );
  }

  // Targets.
  out.push('', '### Targets', '', renderTargets(results, get));
  const seamVariants = renderSeamVariants(results.runs);
  if (seamVariants !== '') out.push('', '### W5 seam variants (each against seams off in the same round)', '', seamVariants);

  // Profile of the txoutbox runs.
  out.push('', '### Where the time goes (txoutbox and raw SQL + NOTIFY, median run)', '');
  for (const v of variants) {
    const name = `${v.workload} ${v.variant}`;
    for (const system of ['txoutbox', 'txoutbox-in-tx', 'raw+notify', 'raw']) {
      if (system !== 'txoutbox' && !(v.workload === 'W1' || name === 'W3 drain c16')) continue;
      const g = get(name, system);
      const runs = g?.runs.filter((r) => r.cost !== undefined && r.msgsPerSec !== undefined) ?? [];
      if (runs.length === 0) continue;
      const sorted = [...runs].sort((a, b) => (a.msgsPerSec ?? 0) - (b.msgsPerSec ?? 0));
      const median = sorted[Math.floor(sorted.length / 2)];
      const cost = median?.cost;
      if (cost === undefined || median === undefined) continue;
      const waits = Object.entries(cost.waits)
        .slice(0, 5)
        .map(([w, share]) => `${w} ${(share * 100).toFixed(0)}%`)
        .join(', ');
      const top = cost.topStatements
        .slice(0, 4)
        .map((s) => `${s.calls}× ${s.totalMs.toFixed(0)} ms \`${s.query.slice(0, 70)}\``)
        .join('; ');
      out.push(
        `- **${name} · ${system}**: CPU machine ${cost.machineCpu === null ? '?' : `${(cost.machineCpu * 100).toFixed(0)}%`} of ${results.machine.cpus} cores, ` +
          `Node ${(cost.nodeCpu * 100).toFixed(0)}% of a core, PostgreSQL ${cost.postgresCpu === null ? '?' : `${(cost.postgresCpu * 100).toFixed(0)}%`}; backend waits: ${waits || 'none sampled'}; top statements: ${top}`,
      );
    }
  }
  const notes = [
    ...results.skipped.map((s) => `- ${s.workload} ${s.system}: ${s.reason}`),
    `- W5 OpenTelemetry: ${results.openTelemetry}${spanCheck(results.runs)}`,
    `- W6: ${results.runner}`,
  ];
  out.push('', '### Skipped and pending', '', ...notes, '');
  return out.join('\n');
}

/** Whether every traced run exported one span per handler run (a dropping span processor would flatter W5). */
function spanCheck(runs: readonly RunRecord[]): string {
  const traced = runs.filter((r) => r.spans !== undefined && r.messages !== undefined);
  if (traced.length === 0) return '';
  const exact = traced.filter((r) => r.spans === (r.spansExpected ?? handlerRuns({ ...r, messages: r.messages ?? 0 })));
  const spans = traced.reduce((sum, r) => sum + (r.spans ?? 0), 0);
  return exact.length === traced.length
    ? `; every traced run exported one span per handler run, none with the dropping sampler (${spans} spans in ${traced.length} runs)`
    : `; **${traced.length - exact.length} of ${traced.length} traced runs did not export one span per handler run** (see their notes)`;
}

function renderTargets(results: BenchResults, get: (variant: string, system: string) => Group | undefined): string {
  const rows: string[][] = [];
  const verdict = (ok: boolean | null): string => (ok === null ? 'n/a' : ok ? 'met' : '**missed**');
  const r = (variant: string, system: string): number | undefined => get(variant, system)?.rate?.median;
  const c16 = r('W3 drain c16', 'txoutbox');
  const rawC16 = r('W3 drain c16', 'raw');
  const bestPeer = PEERS.map((p) => ({ p, value: r('W3 drain c16', p) ?? 0 })).sort((a, b) => b.value - a.value)[0];
  const vsRaw = pairedRatio(get('W3 drain c16', 'txoutbox'), get('W3 drain c16', 'raw'));
  if (c16 !== undefined && rawC16 !== undefined && vsRaw !== null) {
    rows.push(['W3 c16 ≥ 0.8× raw SQL', `${vsRaw.toFixed(2)}× (medians ${rate(c16)} vs ${rate(rawC16)})`, verdict(vsRaw >= 0.8)]);
  }
  const vsPeer = bestPeer === undefined ? null : pairedRatio(get('W3 drain c16', 'txoutbox'), get('W3 drain c16', bestPeer.p));
  if (c16 !== undefined && bestPeer !== undefined && vsPeer !== null) {
    rows.push([
      `W3 c16 ≥ 2× best peer (${bestPeer.p})`,
      `${vsPeer.toFixed(2)}× (medians ${rate(c16)} vs ${rate(bestPeer.value)})`,
      verdict(vsPeer >= 2),
    ]);
  }
  const w1 = r('W1 publish-single', 'txoutbox');
  const w1n = r('W1 publish-single', 'raw+notify');
  const w1Ratio = pairedRatio(get('W1 publish-single', 'txoutbox'), get('W1 publish-single', 'raw+notify'));
  if (w1 !== undefined && w1n !== undefined && w1Ratio !== null) {
    rows.push([
      'W1 ≥ 1.5× raw SQL + NOTIFY',
      `${w1Ratio.toFixed(2)}× (medians ${rate(w1)} vs ${rate(w1n)})`,
      verdict(w1Ratio >= 1.5),
    ]);
  }
  const p99 = get('W4 wake latency', 'txoutbox')?.latency?.p99;
  if (p99 !== undefined) rows.push(['W4 p99 ≤ 3 ms', `${ms(p99)} ms`, verdict(p99 <= 3)]);
  const off = r('W5 seams off', 'txoutbox');
  const on = r('W5 seams on', 'txoutbox');
  const onOff = pairedRatio(get('W5 seams on', 'txoutbox'), get('W5 seams off', 'txoutbox'));
  if (off !== undefined && on !== undefined && onOff !== null) {
    const overhead = 1 - onOff;
    rows.push([
      `W5 seams overhead ≤ 10 % (${results.openTelemetry.startsWith('on') ? 'Prometheus + OTel' : 'Prometheus only, OTel pending'})`,
      `${(overhead * 100).toFixed(1)} % (paired; medians ${rate(on)} vs ${rate(off)})`,
      verdict(overhead <= 0.1),
    ]);
  }
  rows.push(...seamTargetRows(results.runs, verdict));
  for (const concurrency of results.sizes.drainConcurrency) {
    const statements = get(`W3 drain c${concurrency}`, 'txoutbox')?.statements;
    if (statements !== undefined && statements !== null) {
      rows.push([`W3 c${concurrency} ≤ 0.05 statements/msg`, statements.toFixed(4), verdict(statements <= 0.05)]);
    }
  }
  return table(['target', 'measured', 'verdict'], rows);
}

/** Only when set (`--commit-delay`): it changes what W1 and W4 measure. */
function commitDelayNote(settings: Readonly<Record<string, string>>): string {
  const delay = Number(settings.commit_delay ?? '0');
  return delay > 0 ? `, **commit_delay=${delay} µs** (commit_siblings=${settings.commit_siblings ?? '?'})` : '';
}
