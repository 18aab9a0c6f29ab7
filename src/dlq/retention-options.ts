import { InvalidOptionError } from '../errors.js';
import { DURATION_EXPECTED, formatDurationMs, parseDurationMs } from '../util/duration.js';

/**
 * The shortest retention the runner or enforceRetention() accepts. A bare number is milliseconds,
 * so `dlqRetention: 14` (meant as days) would keep 14 ms of dead letters, which is a purge of the
 * whole DLQ every hour: below a minute it is refused with the fix, not obeyed.
 */
export const MIN_RETENTION_MS = 60_000;
/** 100 years: far past any retention policy, and still a valid timestamp when subtracted from now(). */
export const MAX_RETENTION_MS = 36_500 * 86_400_000;

/**
 * A retention (`dlqRetention` in txoutbox.yaml, enforceRetention()'s maxAgeMs): a duration such as
 * `14d` or milliseconds, from 1 minute to 100 years. Raises InvalidOptionError naming `option`.
 */
export function resolveRetentionMs(option: string, value: unknown): number {
  return durationOption(option, value, MIN_RETENTION_MS, 'Write the unit: 14d keeps two weeks of dead letters, 12h half a day.');
}

/**
 * A purge or redrive filter's `olderThanMs` (`--older-than` in the CLI): rows that failed more than
 * this long ago. From 1 ms: a one-off purge is asked for explicitly, unlike a standing retention.
 */
export function resolveOlderThanMs(option: string, value: unknown): number {
  return durationOption(option, value, 1, 'Pass how long ago the rows failed, such as 7d or 3600000 (one hour in ms).');
}

function durationOption(option: string, value: unknown, min: number, fix: string): number {
  const ms = parseDurationMs(value);
  if (ms !== undefined && ms >= min && ms <= MAX_RETENTION_MS) return ms;
  const range = `, from ${formatDurationMs(min)} to ${formatDurationMs(MAX_RETENTION_MS)}`;
  throw new InvalidOptionError({
    option,
    value,
    expected: `${DURATION_EXPECTED}${range}`,
    fix: ms !== undefined && ms < min ? `${formatDurationMs(ms)} is too short. ${fix}` : fix,
  });
}
