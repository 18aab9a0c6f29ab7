import { performance } from 'node:perf_hooks';

import { CustomStatConflictError, InvalidOptionError } from '../errors.js';
import type { Logger } from '../util/logger.js';
import { Memo } from '../util/memo.js';
import type { CustomStat } from './middleware.js';

/** A handler's own metrics (rejected's API), exported by the middlewares that take stats. */
export interface Stats {
  /** Adds `value` (default 1, never negative) to counter `key` → `<prefix>_custom_<key>_total`. */
  incr(key: string, value?: number): void;
  /** Sets gauge `key` → `<prefix>_custom_<key>`. */
  set(key: string, value: number): void;
  /** Records a duration in seconds → histogram `<prefix>_custom_<key>_seconds`. */
  observe(key: string, seconds: number): void;
  /** Runs `fn` and records how long it took (also when it throws); returns its result. */
  time<T>(key: string, fn: () => T | Promise<T>): Promise<T>;
}

type Kind = CustomStat['kind'];

/** Distinct (key, kind) pairs one Outbox exports: bounds the series a handler can create. */
export const DEFAULT_CUSTOM_STATS_LIMIT = 100;

const UNSAFE = /[^a-zA-Z0-9_]/g;

/** The series names (under `<prefix>_custom_`) a stat exports, OpenMetrics family names included. */
function seriesOf(key: string, kind: Kind): string[] {
  switch (kind) {
    case 'counter':
      return [key, `${key}_total`];
    case 'gauge':
      return [key];
    case 'duration':
      return [`${key}_seconds`, `${key}_seconds_bucket`, `${key}_seconds_sum`, `${key}_seconds_count`];
    default: {
      const unreachable: never = kind;
      throw new Error(`unknown stat kind ${String(unreachable)}`);
    }
  }
}

/**
 * The custom-stat keys of one Outbox: sanitises keys to [a-zA-Z0-9_], refuses a key whose series
 * would collide with another kind's (a typed error at the call: a registry would otherwise refuse
 * the second metric and the stat would silently go missing, rejected §4.4), and caps distinct keys
 * (over the cap: warned once, dropped) so a key built from data cannot explode cardinality.
 */
export class CustomStatKeys {
  readonly #limit: number;
  readonly #logger: Logger;
  readonly #sink: (stat: CustomStat) => void;
  /** "<kind> <key>" pairs accepted so far. */
  readonly #accepted = new Set<string>();
  /** Series name → the stat that exports it. */
  readonly #series = new Map<string, { key: string; kind: Kind }>();
  #warnedLimit = false;
  /** subscriber → queue → its Stats. */
  readonly #perPair = new Memo((subscriber: string) => new Memo((queue: string) => this.#statsFor(subscriber, queue)));

  constructor(limit: number, logger: Logger, sink: (stat: CustomStat) => void) {
    this.#limit = limit;
    this.#logger = logger;
    this.#sink = sink;
  }

  /**
   * The `ctx.stats` of deliveries of `queue` to `subscriber`: one object per pair, made once and
   * shared (it holds no per-delivery state), so a delivery that never records a stat costs nothing.
   */
  forDelivery(subscriber: string, queue: string): Stats {
    return this.#perPair.get(subscriber).get(queue);
  }

  #statsFor(subscriber: string, queue: string): Stats {
    const emit = (kind: Kind, call: string, rawKey: unknown, value: number): void => {
      const key = this.#admit(kind, call, rawKey);
      if (key !== undefined) this.#sink({ kind, key, value, subscriber, queue });
    };
    return {
      incr: (key, value = 1) => {
        emit('counter', 'incr', key, checkValue('incr', value, true));
      },
      set: (key, value) => {
        emit('gauge', 'set', key, checkValue('set', value, false));
      },
      observe: (key, seconds) => {
        emit('duration', 'observe', key, checkValue('observe', seconds, true));
      },
      time: async (key, fn) => {
        this.#admit('duration', 'time', key);
        const t0 = performance.now();
        try {
          return await fn();
        } finally {
          emit('duration', 'time', key, (performance.now() - t0) / 1000);
        }
      },
    };
  }

  /** The sanitised key, or undefined when over the cap. Throws on a bad key or a kind conflict. */
  #admit(kind: Kind, call: string, rawKey: unknown): string | undefined {
    if (typeof rawKey !== 'string' || rawKey === '') {
      throw new InvalidOptionError({ option: `ctx.stats.${call} key`, value: rawKey, expected: 'a non-empty string' });
    }
    const key = rawKey.replace(UNSAFE, '_');
    const id = `${kind} ${key}`;
    if (this.#accepted.has(id)) return key;
    const names = seriesOf(key, kind);
    for (const name of names) {
      const owner = this.#series.get(name);
      if (owner !== undefined && !(owner.key === key && owner.kind === kind)) {
        throw new CustomStatConflictError({
          key: rawKey,
          kind,
          existingKey: owner.key,
          existingKind: owner.kind,
          series: `custom_${name}`,
        });
      }
    }
    if (this.#accepted.size >= this.#limit) {
      if (!this.#warnedLimit) {
        this.#warnedLimit = true;
        this.#logger.warn(
          { limit: this.#limit, key },
          'custom stat key limit reached; stats with new keys are dropped (raise customStatsLimit, or stop building keys from data)',
        );
      }
      return undefined;
    }
    this.#accepted.add(id);
    for (const name of names) this.#series.set(name, { key, kind });
    return key;
  }
}

function checkValue(call: string, value: unknown, nonNegative: boolean): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || (nonNegative && value < 0)) {
    throw new InvalidOptionError({
      option: `ctx.stats.${call} value`,
      value,
      expected: nonNegative ? 'a finite number >= 0' : 'a finite number',
    });
  }
  return value;
}
