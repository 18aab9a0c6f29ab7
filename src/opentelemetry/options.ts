import { InvalidOptionError } from '../errors.js';
import { rejectUnknownOptions } from '../util/known-options.js';

/**
 * Validates the options object of `what` — absent is fine (every option has a default), unknown
 * keys are not: a typo such as `tracer_provider` would otherwise be ignored silently and the spans
 * would go to the global provider.
 */
export function resolveRaw(options: unknown, what: string, known: readonly string[]): Record<string, unknown> {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidOptionError({ option: 'options', value: options, expected: `an object of ${what} options, or nothing` });
  }
  const raw = options as Record<string, unknown>;
  rejectUnknownOptions(raw, what, known);
  return raw;
}

/**
 * A provider option (`tracerProvider`, `meterProvider`): undefined, or an object with `method`.
 * Checked by shape, not `instanceof`: the SDK's providers and the API's proxy come from other
 * packages, possibly other copies of them.
 */
export function resolveProvider(
  raw: Record<string, unknown>,
  option: string,
  method: string,
  example: string,
): object | undefined {
  const value = raw[option];
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || typeof (value as Record<string, unknown>)[method] !== 'function') {
    throw new InvalidOptionError({
      option,
      value: typeof value === 'object' && value !== null ? `an object without ${method}()` : value,
      expected: `an OpenTelemetry ${option} (an object with ${method}(), such as ${example}), or undefined for the global one`,
    });
  }
  return value;
}
