import { InvalidOptionError } from '../errors.js';

/**
 * Throws for the first key of `raw` that is not one of `known`: a typo (`leaseTTLMs`,
 * `tracer_provider`) would otherwise be ignored silently and its default used instead.
 * `prefix` names the option as its caller spells it (`serveMetrics.` → `serveMetrics.hots`).
 */
export function rejectUnknownOptions(raw: object, what: string, known: readonly string[], prefix = ''): void {
  // Runs on every publish: no allocation unless a key is wrong.
  for (const key in raw) {
    if (!Object.hasOwn(raw, key) || known.includes(key)) continue;
    const value = (raw as Record<string, unknown>)[key];
    throw new InvalidOptionError({
      option: `${prefix}${key}`,
      value,
      expected: `one of the ${what} options (${known.join(', ')})`,
    });
  }
}
