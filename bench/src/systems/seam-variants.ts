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
