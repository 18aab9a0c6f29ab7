import { CONNECTION_OPTIONS } from './connection-options.js';
import { UsageError } from './usage.js';

/** A count typed on the command line (`--limit 10`): digits only, so `10abc` or `-1` is bad usage, never NaN. */
export function wholeNumber(flag: string, value: string): number {
  if (!/^\d{1,15}$/.test(value)) throw new UsageError(`${flag}: expected a whole number, got '${value}'`);
  return Number(value);
}

/**
 * The subcommand `given` (`queue pause`, `dlq list`), one of those `accepts` lists, after refusing
 * any option it does not take (rejectForeignOptions). `choices` says what the command takes, in the
 * error: `queue takes pause, resume or peek, got 'frobnicate'`.
 */
export function subcommand(
  command: string,
  given: string | undefined,
  accepts: Readonly<Record<string, readonly string[]>>,
  values: Readonly<Record<string, unknown>>,
  choices: string,
): string {
  // Own keys only: `queue constructor` is not a subcommand.
  const taken = given !== undefined && Object.hasOwn(accepts, given) ? accepts[given] : undefined;
  if (given === undefined || taken === undefined) {
    throw new UsageError(`${command} takes ${choices}, got ${given === undefined ? 'nothing' : `'${given}'`}`);
  }
  rejectForeignOptions(values, taken, `${command} ${given}`);
  return given;
}

/**
 * Every option given must be one the subcommand takes (or a connection option): a flag that would
 * be silently ignored (`status --state ready`) is bad usage, not a surprise later.
 */
function rejectForeignOptions(values: Readonly<Record<string, unknown>>, accepted: readonly string[], command: string): void {
  for (const [name, value] of Object.entries(values)) {
    const given = Array.isArray(value) ? value.length > 0 : value !== false && value !== undefined;
    if (given && !(name in CONNECTION_OPTIONS) && !accepted.includes(name)) {
      throw new UsageError(`--${name} does not go with ${command}`);
    }
  }
}

/** The subcommand's operands: exactly `names` (`<queue>`), no more, no fewer. */
export function operands(given: readonly string[], names: readonly string[], command: string): string[] {
  if (given.length < names.length) throw new UsageError(`${command} takes ${names.join(' ')}`);
  if (given.length > names.length) throw new UsageError(`unexpected argument '${given.at(-1)}'`);
  return [...given];
}
