/** The results as a Markdown report: one table, then each scenario's findings and examples. */
import type { ScenarioResult } from './scenario.js';

export interface ChaosResults {
  readonly mode: 'quick' | 'full';
  readonly label: string | undefined;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly productRoot: string;
  readonly productCommit: string;
  readonly harnessCommit: string;
  readonly command: string;
  readonly machine: { readonly cpus: number; readonly node: string; readonly kernel: string };
  readonly scenarios: readonly ScenarioResult[];
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** The recovery closest to its bound (bounds differ: a longer outage is allowed longer), with its bound. */
function recovery(result: ScenarioResult): string {
  if (result.recoveries.length === 0) return '–';
  const none = result.recoveries.find((r) => r.ms === null);
  if (none !== undefined) return `none (≤ ${seconds(none.boundMs)})`;
  const worst = result.recoveries.reduce((a, b) => ((b.ms ?? 0) / b.boundMs > (a.ms ?? 0) / a.boundMs ? b : a));
  return `${seconds(worst.ms ?? 0)} (≤ ${seconds(worst.boundMs)})`;
}

function stopTime(result: ScenarioResult): string {
  if (result.stops.length === 0) return '–';
  const hung = result.stops.find((s) => s.ms === null);
  if (hung !== undefined) return `hung (≤ ${seconds(hung.budgetMs)})`;
  const worst = result.stops.reduce((a, b) => ((b.ms ?? 0) / b.budgetMs > (a.ms ?? 0) / a.budgetMs ? b : a));
  return `${seconds(worst.ms ?? 0)} (≤ ${seconds(worst.budgetMs)})`;
}

export function renderTable(scenarios: readonly ScenarioResult[]): string {
  const rows = [
    '| scenario | messages | lost | duplicates | explained | DLQ unexpected | stuck | handler errors unexpected | recovery (bound) | slowest stop (budget) | result |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |',
  ];
  for (const r of scenarios) {
    const a = r.accounting;
    const cell = (value: number | undefined): string => (value === undefined ? '?' : String(value));
    rows.push(
      `| ${r.id} | ${cell(a?.messages)} | ${cell(a?.lost)} | ${cell(a?.duplicates)} | ${cell(a?.explained)} | ${cell(a?.dlqUnexpected)} | ` +
        `${cell(a?.stuck)} | ${cell(a?.handlerErrorsUnexpected)} | ${recovery(r)} | ${stopTime(r)} | ${r.pass ? 'pass' : '**FAIL**'} |`,
    );
  }
  return rows.join('\n');
}

export function renderReport(results: ChaosResults): string {
  const passed = results.scenarios.filter((s) => s.pass).length;
  const lines = [
    `# txoutbox chaos (${results.mode}${results.label === undefined ? '' : `, ${results.label}`}): ${String(passed)}/${String(results.scenarios.length)} passed`,
    '',
    `Product ${results.productRoot} at ${results.productCommit}; harness at ${results.harnessCommit}. ` +
      `${results.startedAt} → ${results.finishedAt}, ${String(results.machine.cpus)} CPUs, Node ${results.machine.node}.`,
    '',
    `Command: \`${results.command}\``,
    '',
    renderTable(results.scenarios),
    '',
  ];
  for (const r of results.scenarios) {
    const a = r.accounting;
    lines.push(`## ${r.id}: ${r.pass ? 'pass' : 'FAIL'}`, '', r.title, '');
    if (a !== null && r.accountedAt !== undefined) {
      lines.push(
        `${String(a.messages)} messages committed, ${String(a.handlerRuns)} stored by ${r.accountedAt} (read back by a consumer), ` +
          `${String(r.publishFailures)} publishes refused during faults, worst commit → stored ${a.worstLatencyMs === null ? '–' : seconds(a.worstLatencyMs)}; ` +
          `${String(r.faults.length)} faults injected; ${r.seconds.toFixed(0)} s.`,
        '',
      );
    } else if (a !== null) {
      lines.push(
        `${String(a.messages)} messages (${String(a.chains)} chains, ${String(a.chainsComplete)} complete), ${String(a.handlerRuns)} handler runs${a.transactionalRuns > 0 ? ` (${String(a.transactionalRuns)} transactional)` : ''}, ` +
          `${String(a.dlqExpected)} poison rows in the DLQ as meant, ${String(a.handlerErrors)} handler errors, ` +
          `${String(r.publishFailures)} publishes refused during faults, worst publish → handled ${a.worstLatencyMs === null ? '–' : seconds(a.worstLatencyMs)}; ` +
          `${String(r.faults.length)} faults injected; ${r.seconds.toFixed(0)} s.`,
        '',
      );
    }
    for (const s of r.stops) {
      lines.push(`- stop: ${s.what}: ${s.ms === null ? 'hung' : seconds(s.ms)} (budget ${seconds(s.budgetMs)})`);
    }
    for (const x of r.recoveries) {
      lines.push(`- recovery: ${x.what}: ${x.ms === null ? 'not resumed' : seconds(x.ms)} (bound ${seconds(x.boundMs)})`);
    }
    for (const f of r.findings) lines.push(`- **finding**: ${f}`);
    for (const n of r.notes) lines.push(`- note: ${n}`);
    for (const e of a?.examples ?? []) lines.push(`- example: ${e}`);
    lines.push('');
  }
  return `${lines.join('\n')}\n`;
}
