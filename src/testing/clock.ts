import { InvalidOptionError } from '../errors.js';

/**
 * The test outbox's clock: it moves only when the test says so. It stands for both clocks of the
 * real outbox — PostgreSQL's `now()` (created_at, next_attempt_at of delays, timers and retries)
 * and the process's `Date.now()` (a run's start, which the retry strategy sees) — so a retry's
 * delay, `activateInMs` and `maxTotalDelayMs` are all measured on it.
 */
export class TestClock {
  #nowMs: number;

  constructor(start: Date | number = Date.now()) {
    this.#nowMs = toMs('clock', start);
  }

  /** The current time in ms since the epoch. */
  nowMs(): number {
    return this.#nowMs;
  }

  /** The current time. */
  now(): Date {
    return new Date(this.#nowMs);
  }

  /** Moves the clock forward by `ms` (>= 0): rows scheduled within it become due at the next drain(). */
  advance(ms: number): void {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || this.#nowMs + ms > MAX_DATE_MS) {
      throw new InvalidOptionError({
        option: 'clock.advance(ms)',
        value: ms,
        expected: `a number of milliseconds >= 0 that keeps the clock within a Date's range (at most ${MAX_DATE_MS - this.#nowMs})`,
      });
    }
    this.#nowMs += ms;
  }

  /** Sets the clock to `date`. Never backwards: the database clock a real outbox reads does not go back either. */
  set(date: Date | number): void {
    const ms = toMs('clock.set(date)', date);
    if (ms < this.#nowMs) {
      throw new InvalidOptionError({
        option: 'clock.set(date)',
        value: new Date(ms),
        expected: `a time at or after the clock's ${new Date(this.#nowMs).toISOString()}`,
        fix: 'Create a new test outbox with createTestOutbox({ now }) to start at an earlier time.',
      });
    }
    this.#nowMs = ms;
  }
}

/**
 * The last instant a Date holds (±8.64e15 ms around the epoch). Past it every time the test outbox
 * reports (nextAttemptAt, failedAt, drain().now) was an Invalid Date, and clock.set()'s own error
 * threw a RangeError.
 */
const MAX_DATE_MS = 8.64e15;

function toMs(option: string, value: Date | number): number {
  const ms = value instanceof Date ? value.getTime() : value;
  if (typeof ms !== 'number' || !Number.isFinite(ms) || Math.abs(ms) > MAX_DATE_MS) {
    throw new InvalidOptionError({ option, value, expected: 'a valid Date or a number of ms since the epoch, within ±8.64e15' });
  }
  return ms;
}
