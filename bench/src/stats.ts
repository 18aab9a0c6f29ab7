/** Small statistics helpers: medians over repetitions, percentiles over latency samples. */

export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

export function spread(values: readonly number[]): Spread | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
  return { median, min: sorted[0] ?? 0, max: sorted[sorted.length - 1] ?? 0 };
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sortedAscending: readonly number[], p: number): number {
  if (sortedAscending.length === 0) return Number.NaN;
  const rank = Math.min(sortedAscending.length - 1, Math.max(0, Math.ceil((p / 100) * sortedAscending.length) - 1));
  return sortedAscending[rank] ?? Number.NaN;
}

/** A deterministic pseudo-random sequence in [0, 1) (a linear congruential generator): every run of a probe draws the same values. */
export function seededRandom(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

/** How late a probe's messages ran (ms each, negative: early), as its one-line JSON reports it. */
export function latenessSummary(lateness: readonly number[]): Record<string, string | number> {
  const sorted = [...lateness].sort((a, b) => a - b);
  const ms = (p: number) => `${percentile(sorted, p).toFixed(0)} ms`;
  return {
    p50: ms(50),
    p95: ms(95),
    p99: ms(99),
    min: `${sorted[0]} ms`,
    max: `${sorted.at(-1)} ms`,
    early: sorted.filter((late) => late < 0).length,
  };
}
