/** W5's variants, in the order each round runs them, and their names in the report (seams.ts builds them). */
import type { RunOptions } from './system.js';

/** Which seams a W5 run installs; 'off' installs none. */
export type SeamVariant = NonNullable<RunOptions['seams']>;

export const W5_ORDER: readonly SeamVariant[] = ['off', 'prometheus', 'on', 'floor', 'tracing', 'tracing-dropped', 'context'];

export const W5_VARIANTS: Readonly<Record<SeamVariant, string>> = {
  off: 'seams off',
  prometheus: 'Prometheus only',
  on: 'seams on',
  floor: 'bare SDK floor',
  tracing: 'tracing only',
  'tracing-dropped': 'tracing, sampler drops',
  context: 'context manager only',
};

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/**
 * The order of `items` in round `round` (0-based): item `start + step × j` at place j, with a
 * step coprime with the count, so that every item runs once. In round r an item's predecessor is
 * the item `step` places before it, so different steps give it different predecessors (with
 * seven items, six rounds and six predecessors). A fixed order, or a rotation of it (which keeps
 * the cycle), made each variant run after the same one in every round and inherit its garbage and
 * JIT state: the dropping sampler followed recorded tracing in every round until issue 18's round
 * nine. The start grows as round², not linearly: a linear start leaves one item in one place in
 * every round.
 */
export function roundOrder<T>(items: readonly T[], round: number): T[] {
  const n = items.length;
  if (n === 0) return [];
  const steps = Array.from({ length: Math.max(n - 1, 1) }, (_, i) => i + 1).filter((step) => gcd(step, n) === 1);
  const step = steps[round % steps.length] ?? 1;
  const start = (round * round) % n;
  return items.map((_, j) => items[(start + step * j) % n] as T);
}
