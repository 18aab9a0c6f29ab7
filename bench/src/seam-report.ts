/**
 * W5's variants side by side (issue 18): each one's overhead against "seams off" in the same round,
 * by throughput and by the bench process's CPU per message, and tracing's cost above the bare
 * OpenTelemetry SDK floor. CPU per message is the steadier of the two on a shared machine: the
 * seams add Node work, not database work, and throughput also moves with the other tenants. The
 * heap bytes each variant allocates per message, and its main-thread GC pauses, say how much of
 * that CPU is garbage (issue 18, round ten: the largest single part, about 40 %, for the dropping
 * sampler).
 */
import type { RunRecord } from './report.js';
import { spread } from './stats.js';
import { W5_ORDER, W5_VARIANTS } from './systems/seam-variants.js';

const OFF = `W5 ${W5_VARIANTS.off}`;

/** Bytes the bench process allocated on its JavaScript heap per message in the measured phase. */
function heapPerMessage(run: RunRecord): number | undefined {
  const bytes = run.cost?.heapAllocatedBytes;
  return bytes === undefined || bytes === null || run.messages === undefined || run.messages === 0
    ? undefined
    : bytes / run.messages;
}

/** The main thread's garbage-collection time per message in the measured phase, µs. */
function gcPerMessage(run: RunRecord): number | undefined {
  const ms = run.cost?.gcPauseMs;
  return ms === undefined || ms === null || run.messages === undefined || run.messages === 0
    ? undefined
    : (ms * 1000) / run.messages;
}

/** Node CPU µs per message in the measured phase (the process's user + system time). */
export function cpuPerMessage(run: RunRecord): number | undefined {
  if (run.cost === undefined || run.seconds === undefined || run.messages === undefined || run.messages === 0) return undefined;
  return (run.cost.nodeCpu * run.seconds * 1e6) / run.messages;
}

function usable(run: RunRecord): boolean {
  return run.error === undefined && run.note === undefined && run.msgsPerSec !== undefined;
}

/** The usable W5 txoutbox runs of `variant`, by round. */
function byRound(runs: readonly RunRecord[], variant: string): Map<number, RunRecord> {
  const out = new Map<number, RunRecord>();
  for (const run of runs)
    if (run.system === 'txoutbox' && `${run.workload} ${run.variant}` === variant && usable(run)) out.set(run.rep, run);
  return out;
}

/** Median over rounds of `f(a, b)` for the rounds where both ran. */
function paired(
  a: Map<number, RunRecord>,
  b: Map<number, RunRecord>,
  f: (a: RunRecord, b: RunRecord) => number | undefined,
): number | null {
  const values: number[] = [];
  for (const [rep, run] of a) {
    const other = b.get(rep);
    const value = other === undefined ? undefined : f(run, other);
    if (value !== undefined && Number.isFinite(value)) values.push(value);
  }
  return spread(values)?.median ?? null;
}

const throughputOverhead = (x: RunRecord, off: RunRecord): number | undefined =>
  x.msgsPerSec === undefined || off.msgsPerSec === undefined ? undefined : 1 - x.msgsPerSec / off.msgsPerSec;

const cpuAbove = (x: RunRecord, off: RunRecord): number | undefined => {
  const a = cpuPerMessage(x);
  const b = cpuPerMessage(off);
  return a === undefined || b === undefined ? undefined : a - b;
};

const cpuOverhead = (x: RunRecord, off: RunRecord): number | undefined => {
  const above = cpuAbove(x, off);
  const base = cpuPerMessage(off);
  return above === undefined || base === undefined ? undefined : above / base;
};

const pct = (value: number | null): string => (value === null ? '—' : `${(value * 100).toFixed(1)} %`);
const us = (value: number | null): string => (value === null ? '—' : `${value.toFixed(1)} µs`);

export interface SeamFigures {
  /** Per variant name: paired overheads against off. */
  readonly vsOff: Map<string, { throughput: number | null; cpu: number | null; cpuMicros: number | null }>;
  /**
   * Tracing's extra CPU per message over the floor's, both above off: median over rounds of
   * (tracing − off) ÷ median of (floor − off), − 1. A ratio of the two paired medians, not a
   * median of per-round ratios: one round's small floor difference would swing a per-round ratio.
   */
  readonly tracingAboveFloor: number | null;
  /** The same in µs per message: tracing − floor. */
  readonly tracingMinusFloorMicros: number | null;
  /** The dropping sampler above "context manager only" (Node CPU per message, paired): what is tracing's own once the promise hook is paid. */
  readonly droppedAboveContext: { micros: number | null; ofOff: number | null };
}

export function seamFigures(runs: readonly RunRecord[]): SeamFigures {
  const off = byRound(runs, OFF);
  const vsOff = new Map<string, { throughput: number | null; cpu: number | null; cpuMicros: number | null }>();
  for (const variant of W5_ORDER) {
    if (variant === 'off') continue;
    const name = `W5 ${W5_VARIANTS[variant]}`;
    const mine = byRound(runs, name);
    if (mine.size === 0) continue;
    vsOff.set(name, {
      throughput: paired(mine, off, throughputOverhead),
      cpu: paired(mine, off, cpuOverhead),
      cpuMicros: paired(mine, off, cpuAbove),
    });
  }
  const tracing = byRound(runs, `W5 ${W5_VARIANTS.tracing}`);
  const floor = byRound(runs, `W5 ${W5_VARIANTS.floor}`);
  const tracingAbove = vsOff.get(`W5 ${W5_VARIANTS.tracing}`)?.cpuMicros ?? null;
  const floorAbove = vsOff.get(`W5 ${W5_VARIANTS.floor}`)?.cpuMicros ?? null;
  const dropped = byRound(runs, `W5 ${W5_VARIANTS['tracing-dropped']}`);
  const contextOnly = byRound(runs, `W5 ${W5_VARIANTS.context}`);
  const droppedMicros = paired(dropped, contextOnly, cpuAbove);
  const offMicros = spread([...off.values()].flatMap((r) => cpuPerMessage(r) ?? []))?.median;
  return {
    vsOff,
    droppedAboveContext: {
      micros: droppedMicros,
      ofOff: droppedMicros === null || offMicros === undefined ? null : droppedMicros / offMicros,
    },
    tracingAboveFloor: tracingAbove === null || floorAbove === null || floorAbove <= 0 ? null : tracingAbove / floorAbove - 1,
    tracingMinusFloorMicros: paired(tracing, floor, cpuAbove),
  };
}

/** The W5 variant table; empty when W5 did not run. */
export function renderSeamVariants(runs: readonly RunRecord[]): string {
  const w5 = runs.filter((r) => r.workload === 'W5' && r.system === 'txoutbox');
  if (w5.length === 0) return '';
  const figures = seamFigures(runs);
  const rows: string[] = [
    '| W5 variant | msgs/s (median, min–max) | Node CPU µs/msg (median) | overhead vs off, throughput (paired) | Node CPU/msg above off (paired) | heap allocated B/msg | main-thread GC µs/msg |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const variant of W5_ORDER) {
    const name = `W5 ${W5_VARIANTS[variant]}`;
    const mine = [...byRound(runs, name).values()];
    const rate = spread(mine.flatMap((r) => (r.msgsPerSec === undefined ? [] : [r.msgsPerSec])));
    const cpu = spread(mine.flatMap((r) => cpuPerMessage(r) ?? []));
    const heap = spread(mine.flatMap((r) => heapPerMessage(r) ?? []));
    const gc = spread(mine.flatMap((r) => gcPerMessage(r) ?? []));
    if (rate === null) continue;
    const k = (v: number): string => `${(v / 1000).toFixed(1)}k`;
    const o = figures.vsOff.get(name);
    rows.push(
      `| ${W5_VARIANTS[variant]} | ${k(rate.median)} (${k(rate.min)}–${k(rate.max)}) | ${us(cpu?.median ?? null)} | ` +
        `${o === undefined ? '' : pct(o.throughput)} | ${o === undefined ? '' : `${us(o.cpuMicros)} (${pct(o.cpu)})`} | ` +
        `${heap === null ? '—' : heap.median.toFixed(0)} | ${gc === null ? '—' : gc.median.toFixed(1)} |`,
    );
  }
  return [
    ...rows,
    '',
    `Tracing above the bare SDK floor (Node CPU per message above off, paired medians, tracing's ÷ the floor's − 1): ` +
      `${pct(figures.tracingAboveFloor)}; tracing − floor paired per round: ${us(figures.tracingMinusFloorMicros)} per message.`,
    ...(figures.droppedAboveContext.micros === null
      ? []
      : [
          '',
          `Tracing with a dropping sampler above "context manager only" (the AsyncLocalStorage promise hook paid by both; ` +
            `Node CPU per message, paired): ${us(figures.droppedAboveContext.micros)} (${pct(figures.droppedAboveContext.ofOff)} of off's).`,
        ]),
  ].join('\n');
}

/** Issue 18's W5 targets, for the targets table. */
export function seamTargetRows(runs: readonly RunRecord[], verdict: (ok: boolean | null) => string): string[][] {
  const figures = seamFigures(runs);
  const rows: string[][] = [];
  const both = (name: string): string => {
    const o = figures.vsOff.get(`W5 ${W5_VARIANTS[name as keyof typeof W5_VARIANTS]}`);
    return o === undefined ? '—' : `${pct(o.cpu)} Node CPU/msg (${us(o.cpuMicros)}); throughput ${pct(o.throughput)} (paired)`;
  };
  const cpuOf = (name: keyof typeof W5_VARIANTS): number | null => figures.vsOff.get(`W5 ${W5_VARIANTS[name]}`)?.cpu ?? null;
  const ok = (value: number | null, limit: number): boolean | null => (value === null ? null : value <= limit);
  if (figures.tracingAboveFloor !== null) {
    rows.push([
      'W5 tracing above the bare SDK floor ≤ 20 % (Node CPU/msg)',
      `${pct(figures.tracingAboveFloor)} (${us(figures.tracingMinusFloorMicros)} per message)`,
      verdict(ok(figures.tracingAboveFloor, 0.2)),
    ]);
  }
  if (figures.vsOff.has(`W5 ${W5_VARIANTS['tracing-dropped']}`)) {
    rows.push([
      'W5 tracing with a dropping sampler ≤ 3 % over no tracing (Node CPU/msg)',
      both('tracing-dropped'),
      verdict(ok(cpuOf('tracing-dropped'), 0.03)),
    ]);
  }
  if (figures.vsOff.has(`W5 ${W5_VARIANTS.prometheus}`)) {
    rows.push(['W5 Prometheus seams alone ≤ 5 % (Node CPU/msg)', both('prometheus'), verdict(ok(cpuOf('prometheus'), 0.05))]);
  }
  return rows;
}
