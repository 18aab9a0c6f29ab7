/** The scale bench's curves, one SVG each (file name → chart), from its results. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { drainGroups, publishGroups, type ScaleResults } from './results.js';
import { soakSeries } from './soak.js';
import { type LineChart, renderLineChart, type Series } from './svg-chart.js';

const SYSTEM_LABEL: Record<string, string> = { txoutbox: 'txoutbox', raw: 'raw SQL', 'raw+notify': 'raw SQL + NOTIFY' };
const label = (system: string): string => SYSTEM_LABEL[system] ?? system;

/** One series per system (or per `seriesOf`), points whose values are unknown (NaN: no claim ran) left out. */
function bySystem<T extends { system: string }>(
  items: readonly T[],
  point: (item: T) => [number, number],
  seriesOf: (item: T) => string = (item) => label(item.system),
): Series[] {
  const names = [...new Set(items.map(seriesOf))];
  return names.map((name) => ({
    name,
    points: items
      .filter((i) => seriesOf(i) === name)
      .map(point)
      .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)),
  }));
}

/** Workload a: the backlog with scheduled and DLQ rows is its own point, not a step of the ready-backlog curve. */
const backlogSeries = (g: { system: string; label: string }): string =>
  g.label.includes('scheduled') ? `${label(g.system)}: ready + scheduled + DLQ rows` : `${label(g.system)}: ready rows only`;

export function scaleCharts(results: ScaleResults): Map<string, string> {
  const charts = new Map<string, LineChart>();
  const drains = drainGroups(results.drains);
  const backlog = drains.filter((g) => g.workload === 'a');
  if (backlog.length > 0) {
    charts.set('scale-drain-by-backlog.svg', {
      title: `Drain rate (c16, first ${results.sizes.drainMeasured.toLocaleString('en-US')} messages) by backlog`,
      xLabel: 'rows in the queue table and its DLQ when the drain starts',
      yLabel: 'messages/s (median)',
      xScale: 'log',
      series: bySystem(backlog, (g) => [g.backlogRows, g.msgsPerSec], backlogSeries),
    });
    charts.set('scale-claim-by-backlog.svg', {
      title: 'Claim statement mean time by backlog (pg_stat_statements)',
      xLabel: 'rows in the queue table and its DLQ when the drain starts',
      yLabel: 'ms per claim (median)',
      xScale: 'log',
      series: bySystem(backlog, (g) => [g.backlogRows, g.claimMeanMs], backlogSeries),
    });
  }
  const queues = drains.filter((g) => g.workload === 'b');
  if (queues.length > 0) {
    charts.set('scale-claim-by-queues.svg', {
      title: 'Claim cost per message by queues in one subscription',
      xLabel: 'queues in subscribe([…])',
      yLabel: 'claim µs per claimed message (median)',
      xScale: 'log',
      series: bySystem(queues, (g) => [g.queues, g.claimUsPerMessage]),
    });
    charts.set('scale-drain-by-queues.svg', {
      title: 'Drain rate (c16) by queues in one subscription',
      xLabel: 'queues in subscribe([…])',
      yLabel: 'messages/s (median)',
      xScale: 'log',
      series: bySystem(queues, (g) => [g.queues, g.msgsPerSec]),
    });
  }
  const publishes = publishGroups(results.publishes);
  if (publishes.length > 0) {
    charts.set('scale-publish-by-producers.svg', {
      title: 'W1: one message per transaction, by concurrent producers',
      xLabel: 'producers',
      yLabel: 'messages/s (median)',
      xScale: 'log',
      series: bySystem(publishes, (g) => [g.producers, g.msgsPerSec]),
    });
  }
  const soak = results.soaks.find((s) => s.variant === 'soak');
  const off = results.soaks.find((s) => s.variant === 'autovacuum off');
  if (soak !== undefined) {
    const on = soakSeries(soak.samples);
    const offSeries = off === undefined ? undefined : soakSeries(off.samples);
    const withOff = (name: string, onLabel: string, offLabel: string, scale = 1): Series[] => [
      { name: onLabel, points: (on[name] ?? []).map(([t, y]) => [t, y / scale]) },
      ...(offSeries === undefined
        ? []
        : [{ name: offLabel, points: (offSeries[name] ?? []).map(([t, y]) => [t, y / scale] as [number, number]) }]),
    ];
    const target = soak.targetRate === null ? '' : ` at ${soak.targetRate.toLocaleString('en-US')} msgs/s`;
    charts.set('scale-soak-rates.svg', {
      title: `Soak${target}: publish and drain rates per window`,
      xLabel: 'seconds',
      yLabel: 'messages/s',
      series: [
        { name: 'published/s', points: on['published/s'] ?? [] },
        { name: 'drained/s', points: on['drained/s'] ?? [] },
        ...(offSeries === undefined
          ? []
          : [
              { name: 'published/s, autovacuum off', points: offSeries['published/s'] ?? [] },
              { name: 'drained/s, autovacuum off', points: offSeries['drained/s'] ?? [] },
            ]),
      ],
    });
    charts.set('scale-soak-p99.svg', {
      title: `Soak${target}: p99 COMMIT → handler per window`,
      xLabel: 'seconds',
      yLabel: 'ms',
      series: withOff('p99 ms', 'p99, autovacuum tuned', 'p99, autovacuum off'),
    });
    const indexSeries = Object.keys(on).filter((name) => name.endsWith(' bytes') && name !== 'table bytes');
    charts.set('scale-soak-sizes.svg', {
      title: `Soak${target}: table and index sizes`,
      xLabel: 'seconds',
      yLabel: 'KiB',
      series: [
        { name: 'table (heap)', points: (on['table bytes'] ?? []).map(([t, y]) => [t, y / 1024]) },
        ...indexSeries.map((name) => ({
          name: name.replace(/ bytes$/, ''),
          points: (on[name] ?? []).map(([t, y]) => [t, y / 1024] as [number, number]),
        })),
        ...(offSeries === undefined
          ? []
          : [
              {
                name: 'table (heap), autovacuum off',
                points: (offSeries['table bytes'] ?? []).map(([t, y]) => [t, y / 1024] as [number, number]),
              },
            ]),
      ],
    });
    charts.set('scale-soak-dead-tuples.svg', {
      title: `Soak${target}: dead tuples (pg_stat_user_tables)`,
      xLabel: 'seconds',
      yLabel: 'n_dead_tup',
      series: withOff('dead tuples', 'autovacuum tuned (autovacuumDdl)', 'autovacuum off'),
    });
    charts.set('scale-soak-claim.svg', {
      title: `Soak${target}: claim statement mean time per window`,
      xLabel: 'seconds',
      yLabel: 'ms per claim',
      series: withOff('claim mean ms', 'autovacuum tuned', 'autovacuum off'),
    });
  }
  return new Map([...charts].map(([file, chart]) => [file, renderLineChart(chart)]));
}

/** Writes every chart into each of `dirs` (created when missing); returns how many charts. */
export function writeCharts(results: ScaleResults, dirs: readonly string[]): number {
  const rendered = scaleCharts(results);
  for (const dir of dirs) {
    mkdirSync(dir, { recursive: true });
    for (const [file, svg] of rendered) writeFileSync(join(dir, file), svg);
  }
  return rendered.size;
}
