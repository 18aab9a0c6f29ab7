import { InvalidOptionError } from '../errors.js';

/** An optional whole-number option in [min, max]; `fallback` when it is left out. */
export function integerOption(option: string, value: unknown, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidOptionError({
      option,
      value,
      expected: `an integer from ${min} to ${max}`,
      fix: `Pass a whole number in that range, or leave ${option} out for ${fallback}.`,
    });
  }
  return value;
}
