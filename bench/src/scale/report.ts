/** The scale bench's Markdown report: one table per workload, the targets, the soak's slopes. */
import { drainGroups, publishGroups, type ScaleResults } from './results.js';

const n = (value: number, digits = 0): string =>
  Number.isFinite(value) ? value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '—';
const rate = (value: number): string => (value >= 10_000 ? `${(value / 1000).toFixed(1)}k` : n(value));
const range = (values: readonly number[]): string => {
  const finite = values.filter((v) => Number.isFinite(v));
  return finite.length < 2 ? '' : ` (${rate(Math.min(...finite))}–${rate(Math.max(...finite))})`;
};

export function renderScaleReport(results: ScaleResults, chartLinks: (file: string) => string): string {
  const lines: string[] = [
    `## Scale bench (${results.mode}), ${results.startedAt}`,
    '',
    `Command: \`${results.command}\` · commit ${results.commit} · PostgreSQL ${results.postgres.version} · ` +
      `${results.machine.cpus} CPUs (${results.machine.cpuModel}), Node ${results.machine.node}`,
    '',
  ];
  const drains = drainGroups(results.drains);
  const backlog = drains.filter((g) => g.workload === 'a');
  if (backlog.length > 0) {
    const reference = backlog.find((g) => g.system === 'txoutbox' && g.label.startsWith('reference'));
    const rawReference = backlog.find((g) => g.system === 'raw' && g.label.startsWith('reference'));
    lines.push(
      `### a. Drain (c16, fetchBatchSize 100, no-op handler) by backlog: the first ${n(results.sizes.drainMeasured)} messages`,
      '',
      '| backlog | system | rows at start | msgs/s median (range) | vs its reference | claim mean ms | claim µs/msg | stmts/msg | Node CPU µs/msg | PG CPU µs/msg | autovacuums in window | load s |',
      '|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
    );
    for (const g of backlog) {
      const ref = g.system === 'raw' ? rawReference : reference;
      const ratio = ref === undefined ? Number.NaN : g.msgsPerSec / ref.msgsPerSec;
      lines.push(
        `| ${g.label} | ${g.system} | ${n(g.backlogRows)} | **${rate(g.msgsPerSec)}**${range(g.runs.map((r) => r.msgsPerSec))} | ${n(ratio, 2)}× | ` +
          `${n(g.claimMeanMs, 2)} | ${n(g.claimUsPerMessage, 1)} | ${n(g.statementsPerMsg, 3)} | ${n(g.nodeCpuUsPerMsg, 1)} | ` +
          `${n(g.postgresCpuUsPerMsg, 1)} | ${g.runs.map((r) => r.autovacuums).join(', ')} | ${n(g.runs[0]?.loadSeconds ?? Number.NaN, 1)} |`,
      );
    }
    lines.push('', 'Target: every txoutbox backlog within 10 % of the reference drain (ratio ≥ 0.90).', '');
    for (const g of backlog.filter((b) => b.system === 'txoutbox' && b !== reference)) {
      const ratio = reference === undefined ? Number.NaN : g.msgsPerSec / reference.msgsPerSec;
      lines.push(`- ${g.label}: ${n(ratio, 2)}× the reference — **${ratio >= 0.9 ? 'met' : 'missed'}**`);
    }
    lines.push(
      '',
      `![drain rate by backlog](${chartLinks('scale-drain-by-backlog.svg')})`,
      `![claim time by backlog](${chartLinks('scale-claim-by-backlog.svg')})`,
      '',
    );
  }
  const queues = drains.filter((g) => g.workload === 'b');
  if (queues.length > 0) {
    lines.push(
      `### b. One subscription over N queues (\`subscribe(queues[])\`), ${n(results.sizes.drainMeasured)} rows spread evenly, c16`,
      '',
      '| queues | msgs/s median (range) | claim calls | claim mean ms | claim µs per claimed msg | stmts/msg | Node CPU µs/msg | PG CPU µs/msg |',
      '|--:|--:|--:|--:|--:|--:|--:|--:|',
    );
    for (const g of queues) {
      lines.push(
        `| ${n(g.queues)} | **${rate(g.msgsPerSec)}**${range(g.runs.map((r) => r.msgsPerSec))} | ${n(g.runs[0]?.claimCalls ?? Number.NaN)} | ` +
          `${n(g.claimMeanMs, 2)} | ${n(g.claimUsPerMessage, 1)} | ${n(g.statementsPerMsg, 3)} | ${n(g.nodeCpuUsPerMsg, 1)} | ${n(g.postgresCpuUsPerMsg, 1)} |`,
      );
    }
    lines.push(
      '',
      `![claim cost by queues](${chartLinks('scale-claim-by-queues.svg')})`,
      `![drain rate by queues](${chartLinks('scale-drain-by-queues.svg')})`,
      '',
    );
  }
  const publishes = publishGroups(results.publishes);
  if (publishes.length > 0) {
    const producers = [...new Set(publishes.map((p) => p.producers))];
    const systems = [...new Set(publishes.map((p) => p.system))];
    lines.push(
      '### c. W1: one message per transaction, by producers (msgs/s median; stmts/msg)',
      '',
      `| producers | ${systems.join(' | ')} | txoutbox / raw |`,
      `|--:|${systems.map(() => '--:').join('|')}|--:|`,
    );
    for (const p of producers) {
      const cell = (system: string) => publishes.find((g) => g.system === system && g.producers === p);
      const txo = cell('txoutbox');
      const raw = cell('raw');
      lines.push(
        `| ${p} | ${systems
          .map((s) => {
            const g = cell(s);
            return g === undefined
              ? '—'
              : `**${rate(g.msgsPerSec)}**${range(g.runs.map((r) => r.msgsPerSec))}; ${n(g.statementsPerMsg, 2)}`;
          })
          .join(' | ')} | ${txo === undefined || raw === undefined ? '—' : `${n(txo.msgsPerSec / raw.msgsPerSec, 2)}×`} |`,
      );
    }
    lines.push('', `![W1 by producers](${chartLinks('scale-publish-by-producers.svg')})`, '');
  }
  if (results.soaks.length > 0) {
    lines.push('### d. Soak: publish and drain together at 80 % of the calibrated maximum', '');
    lines.push(
      '| run | target msgs/s | seconds | published/s | drained/s | p99 ms (whole run) | handled / published | autovacuum runs | note |',
      '|---|--:|--:|--:|--:|--:|--:|--:|---|',
    );
    for (const s of results.soaks) {
      const lastSample = s.samples[s.samples.length - 1];
      lines.push(
        `| ${s.variant} | ${s.targetRate === null ? 'max' : rate(s.targetRate)} | ${n(s.seconds, 0)} | ${rate(s.publishedPerSec)} | ` +
          `${rate(s.drainedPerSec)} | ${n(s.p99Ms, 1)} | ${n(s.handled)} / ${n(s.published)} | ${lastSample?.autovacuums ?? '—'} | ${s.note ?? ''} |`,
      );
    }
    const soaks = results.soaks.filter((s) => s.variant !== 'calibrate');
    const names = [...new Set(soaks.flatMap((s) => Object.keys(s.slopes)))];
    lines.push(
      '',
      'Slopes (least squares over the samples after the first; change per minute, and as % of the mean per minute):',
      '',
      `| series | ${soaks.map((s) => `${s.variant}: mean · slope/min · %/min`).join(' | ')} |`,
      `|---|${soaks.map(() => '--:').join('|')}|`,
    );
    for (const name of names) {
      lines.push(
        `| ${name} | ${soaks
          .map((s) => {
            const slope = s.slopes[name];
            return slope === undefined
              ? '—'
              : `${n(slope.mean, 2)} · ${n(slope.perMinute, 2)} · ${n(slope.percentPerMinute, 2)} %`;
          })
          .join(' | ')} |`,
      );
    }
    for (const s of soaks) {
      const first = s.samples[0];
      const last = s.samples[s.samples.length - 1];
      if (first === undefined || last === undefined) continue;
      lines.push(
        '',
        `${s.variant}: first sample (t=${first.t} s) → last (t=${last.t} s): dead tuples ${n(first.deadTuples)} → ${n(last.deadTuples)}, ` +
          `heap ${n(first.tableBytes / 1024)} → ${n(last.tableBytes / 1024)} KiB, claim mean ${n(first.claimMeanMs, 3)} → ${n(last.claimMeanMs, 3)} ms, ` +
          `p99 ${n(first.p99Ms, 1)} → ${n(last.p99Ms, 1)} ms; table reloptions: ${s.autovacuumSettings || 'none'}`,
      );
    }
    lines.push(
      '',
      ...['rates', 'p99', 'sizes', 'dead-tuples', 'claim'].map((c) => `![soak ${c}](${chartLinks(`scale-soak-${c}.svg`)})`),
      '',
    );
  }
  if (results.failures.length > 0) {
    lines.push('### Failures', '', ...results.failures.map((f) => `- ${f.workload} ${f.label}: ${f.error}`), '');
  }
  return `${lines.join('\n')}\n`;
}
