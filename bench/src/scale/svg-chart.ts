/**
 * A small line-chart writer: axes, ticks, labels, a legend and several series, as a standalone SVG
 * string. No dependency: the scale bench writes its curves into the repository (bench/charts/), where
 * a reader of BENCHMARKS.md sees them rendered by GitHub, and a plotting library would be a
 * dependency of the bench for a few hundred lines of SVG.
 */

export interface Series {
  readonly name: string;
  /** [x, y] pairs, any order (drawn sorted by x). Every value must be a finite number. */
  readonly points: readonly (readonly [number, number])[];
}

export interface LineChart {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
  /** `log` (base 10) for counts spanning orders of magnitude (queues, producers, backlog rows). */
  readonly xScale?: 'linear' | 'log';
  /** The y axis starts at 0 unless told otherwise: a flat line must look flat, not like noise. */
  readonly yFromZero?: boolean;
  readonly width?: number;
  readonly height?: number;
}

/** A value the chart cannot place: NaN, ±Infinity, or ≤ 0 on a log axis. */
export class ChartDataError extends Error {
  readonly series: string;
  readonly index: number;
  readonly value: number;

  constructor(series: string, index: number, value: number, why: string) {
    super(`chart series "${series}", point ${index}: ${why} (got ${value})`);
    this.name = 'ChartDataError';
    this.series = series;
    this.index = index;
    this.value = value;
  }
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
const MARGIN = { top: 40, right: 20, bottom: 52, left: 72 };
const LEGEND_ROW = 16;

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&${{ '<': 'lt', '>': 'gt', '&': 'amp', '"': 'quot', "'": 'apos' }[c] ?? ''};`);
}

/** About `count` round tick values (1, 2, 5 × 10^k steps), the first ≤ min and the last ≥ max. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (min === max) return [min];
  const raw = (max - min) / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude;
  const ticks: number[] = [];
  const first = Math.floor(min / step + 1e-9);
  const last = Math.ceil(max / step - 1e-9);
  for (let i = first; i <= last; i += 1) ticks.push(Number((i * step).toPrecision(12)));
  return ticks;
}

/** Tick labels short enough for an axis: 1.5k, 2M, 0.25. */
export function formatTick(value: number): string {
  const abs = Math.abs(value);
  const trim = (n: number): string => String(Number(n.toPrecision(4)));
  if (abs >= 1e6) return `${trim(value / 1e6)}M`;
  if (abs >= 1e4) return `${trim(value / 1e3)}k`;
  return trim(value);
}

function checked(chart: LineChart): void {
  for (const series of chart.series) {
    series.points.forEach(([x, y], index) => {
      for (const value of [x, y]) {
        if (!Number.isFinite(value)) throw new ChartDataError(series.name, index, value, 'values must be finite numbers');
      }
      if (chart.xScale === 'log' && x <= 0) throw new ChartDataError(series.name, index, x, 'x must be > 0 on a log axis');
    });
  }
}

/** The data's extent, widened so a single value (or none) still gives a drawable axis. */
function extent(values: readonly number[], fromZero: boolean, fallback: [number, number]): [number, number] {
  if (values.length === 0) return fallback;
  let min = Math.min(...values);
  const max = Math.max(...values);
  if (fromZero) min = Math.min(0, min);
  if (min === max) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    return [fromZero && min >= 0 ? Math.max(0, min - pad) : min - pad, max + pad];
  }
  return [min, max];
}

export function renderLineChart(chart: LineChart): string {
  checked(chart);
  const width = chart.width ?? 640;
  const legendHeight = chart.series.length * LEGEND_ROW;
  const height = (chart.height ?? 360) + legendHeight;
  const plot = {
    left: MARGIN.left,
    top: MARGIN.top,
    width: width - MARGIN.left - MARGIN.right,
    height: height - MARGIN.top - MARGIN.bottom - legendHeight,
  };
  const log = chart.xScale === 'log';
  const xs = chart.series.flatMap((s) => s.points.map(([x]) => (log ? Math.log10(x) : x)));
  const ys = chart.series.flatMap((s) => s.points.map(([, y]) => y));
  const [xLo, xHi] = extent(xs, false, [0, 1]);
  const xTicks = log
    ? Array.from({ length: Math.ceil(xHi) - Math.floor(xLo) + 1 }, (_, i) => Math.floor(xLo) + i)
    : niceTicks(xLo, xHi);
  const x0 = Math.min(xLo, xTicks[0] ?? xLo);
  const x1 = Math.max(xHi, xTicks[xTicks.length - 1] ?? xHi);
  const [yLo, yHi] = extent(ys, chart.yFromZero ?? true, [0, 1]);
  const yTicks = niceTicks(yLo, yHi);
  // Both axes end on ticks: round numbers at both ends.
  const y0 = Math.min(yLo, yTicks[0] ?? yLo);
  const y1 = Math.max(yHi, yTicks[yTicks.length - 1] ?? yHi);
  const px = (x: number): number => plot.left + ((x - x0) / (x1 - x0)) * plot.width;
  const py = (y: number): number => plot.top + plot.height - ((y - y0) / (y1 - y0)) * plot.height;
  const r = (n: number): string => n.toFixed(1);

  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(chart.title)}</text>`,
  ];
  for (const tick of yTicks) {
    const y = r(py(tick));
    out.push(
      `<line x1="${plot.left}" y1="${y}" x2="${plot.left + plot.width}" y2="${y}" stroke="#e0e0e0"/>`,
      `<text x="${plot.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${escapeXml(formatTick(tick))}</text>`,
    );
  }
  for (const tick of xTicks) {
    const x = r(px(tick));
    const label = log ? formatTick(10 ** tick) : formatTick(tick);
    out.push(
      `<line x1="${x}" y1="${plot.top + plot.height}" x2="${x}" y2="${plot.top + plot.height + 5}" stroke="#333333"/>`,
      `<text x="${x}" y="${plot.top + plot.height + 17}" text-anchor="middle">${escapeXml(label)}</text>`,
    );
  }
  out.push(
    `<line x1="${plot.left}" y1="${plot.top + plot.height}" x2="${plot.left + plot.width}" y2="${plot.top + plot.height}" stroke="#333333"/>`,
    `<line x1="${plot.left}" y1="${plot.top}" x2="${plot.left}" y2="${plot.top + plot.height}" stroke="#333333"/>`,
    `<text x="${plot.left + plot.width / 2}" y="${plot.top + plot.height + 36}" text-anchor="middle">${escapeXml(chart.xLabel)}${log ? ' (log scale)' : ''}</text>`,
    `<text transform="translate(16 ${plot.top + plot.height / 2}) rotate(-90)" text-anchor="middle">${escapeXml(chart.yLabel)}</text>`,
  );
  chart.series.forEach((series, i) => {
    const color = COLORS[i % COLORS.length] ?? '#000000';
    const points = series.points
      .map(([x, y]) => [log ? Math.log10(x) : x, y] as const)
      .sort((a, b) => a[0] - b[0])
      .map(([x, y]) => `${r(px(x))},${r(py(y))}`);
    if (points.length > 1) {
      out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${points.join(' ')}"/>`);
    }
    for (const point of points) {
      const [cx, cy] = point.split(',');
      out.push(`<circle cx="${cx}" cy="${cy}" r="2.5" fill="${color}"/>`);
    }
    const ly = plot.top + plot.height + MARGIN.bottom - 4 + i * LEGEND_ROW;
    out.push(
      `<line x1="${plot.left}" y1="${ly}" x2="${plot.left + 18}" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
      `<text x="${plot.left + 24}" y="${ly}" dominant-baseline="middle">${escapeXml(series.name)}</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
