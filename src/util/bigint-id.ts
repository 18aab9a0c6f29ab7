/** PostgreSQL's bigint maximum: an id above it cannot exist, and binding it fails the statement (22003). */
const MAX_BIGINT = 9_223_372_036_854_775_807n;

/**
 * A positive bigint row id written as digits (`'42'`): what list(), get() and the cursors carry.
 * Checked here, so a mistyped or forged id is the caller's InvalidOptionError, not the server's error.
 * `zero`: '0' is allowed too (lastId() of an empty DLQ).
 */
export function isBigintId(text: unknown, zero = false): boolean {
  if (typeof text !== 'string' || !/^(0|[1-9][0-9]{0,18})$/.test(text)) return false;
  if (text === '0') return zero;
  return BigInt(text) <= MAX_BIGINT;
}

/** Orders ids as numbers (shorter first, then by digit: they have no leading zeros). */
export function compareIds(a: string, b: string): number {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}
