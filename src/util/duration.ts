/**
 * Durations an operator writes (`dlqRetention: 14d`, `--older-than 12h`): a whole number and one
 * unit, or a bare whole number of milliseconds (the library's own unit, and what `${VAR}` gives).
 * One unit only: `1d12h` reads well but `36h` says the same, and one rule is easier to explain in
 * an error than a grammar.
 */
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION = /^\s*(\d+)\s*(ms|s|m|h|d)\s*$/;

/** What every duration error says it expected. */
export const DURATION_EXPECTED =
  'a duration such as 14d, 12h, 30m or 90s (units d, h, m, s, ms), or a whole number of milliseconds';

/** The duration in milliseconds, or undefined when `value` is not one (or not a safe integer). */
export function parseDurationMs(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  if (/^\s*\d+\s*$/.test(value)) return parseDurationMs(Number(value));
  const match = DURATION.exec(value);
  if (match === null) return undefined;
  const ms = Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** `1209600000` → `14d`, `5400000` → `90m`: the largest unit that divides it, for logs and messages. */
export function formatDurationMs(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    if (ms >= UNIT_MS[unit] && ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  }
  return `${ms}ms`;
}
