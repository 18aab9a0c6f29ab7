import { type ConfigIssue, renderValue } from '../../errors.js';
import { unknownKeyMessage } from './did-you-mean.js';

export type Section = Readonly<Record<string, unknown>>;

export function isSection(value: unknown): value is Section {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const PLAIN_KEY = /^[A-Za-z0-9_-]+$/;

/** An expectation a number or a boolean meets (integer, port, `true or false`, a duration, a count). */
const NUMERIC_OR_BOOLEAN = /\b(integer|number|true or false|boolean|duration|milliseconds)\b/i;

/** `consumers` + `orders` → `consumers.orders`; list items are `queues[1]`, odd keys `consumers["a.b"]`. */
export function childPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  if (!PLAIN_KEY.test(key)) return `${parent}[${JSON.stringify(key)}]`;
  return parent === '' ? key : `${parent}.${key}`;
}

/**
 * Every problem found in one config, each with its path. The first problem at a path wins: a
 * `${VAR}` that is not set is reported once, not again as a wrong type by the validation after it.
 */
export class ConfigIssues {
  readonly #issues: ConfigIssue[] = [];
  readonly #paths = new Set<string>();
  readonly #secrets = new Set<string>();
  /** Whole `${VAR}` values and how interpolation read them (interpolate-env.ts), by path: see #envHint. */
  readonly #fromEnv = new Map<
    string,
    { readonly reference: string; readonly as: 'a number' | 'a boolean'; readonly quoted: boolean }
  >();

  get count(): number {
    return this.#issues.length;
  }

  /**
   * A value the file holds that no issue may show (a webhook secret, a broker password): the loader
   * masks it in every issue, as the second line behind validators that never echo it.
   */
  secret(value: string): void {
    // As secretsIn(): very short ones would mangle every message they happen to occur in.
    if (value.length >= 4) this.#secrets.add(value);
  }

  secrets(): readonly string[] {
    return [...this.#secrets];
  }

  list(): readonly ConfigIssue[] {
    return [...this.#issues];
  }

  /**
   * A whole `${VAR}` at `path` whose text reads as a number or a boolean: typed so when plain, kept
   * text when quoted. An issue there that shows the value then says which way it was read and how
   * to write it the other way: "expected a string, got 2024" alone does not say why.
   */
  fromEnv(path: string, reference: string, as: 'a number' | 'a boolean', quoted: boolean): void {
    this.#fromEnv.set(path, { reference, as, quoted });
  }

  add(path: string, message: string): void {
    if (this.#paths.has(path)) return;
    this.#paths.add(path);
    this.#issues.push({ path, message: message + this.#envHint(path, message) });
  }

  /**
   * The hint for an issue whose value came from a whole `${VAR}`, when the issue is about its type:
   * a plain one typed as a number or boolean where the expectation is not one (the value itself, or
   * an item of the list the issue is about), or a quoted one kept text where it is.
   */
  #envHint(path: string, message: string): string {
    if (!/\bgot\b/.test(message)) return '';
    const wantsScalar = NUMERIC_OR_BOOLEAN.test(message.slice(0, message.lastIndexOf('got')));
    for (const [at, { reference, as, quoted }] of this.#fromEnv) {
      const item = at === path || (at.startsWith(`${path}[`) && !at.slice(path.length + 1).includes('.'));
      if (!item) continue;
      if (!quoted && !wantsScalar) return ` (${reference} was read as ${as}; to keep its text, quote it: "${reference}")`;
      if (quoted && wantsScalar && at === path)
        return ` ("${reference}" is quoted, so it stays text; write it unquoted, ${reference}, to read it as ${as})`;
    }
    return '';
  }

  /**
   * `expected <what>, got <value>` (`missing, expected <what>` when absent; `empty, …` for a YAML
   * key with no value, which must not read as a default), plus how to fix it.
   */
  expected(path: string, expected: string, value: unknown, fix?: string): void {
    const got =
      value === undefined
        ? `missing, expected ${expected}`
        : value === null
          ? `empty, expected ${expected} (write a value, or remove the key to take its default)`
          : `expected ${expected}, got ${renderValue(value)}`;
    this.add(path, fix === undefined ? got : `${got}. ${fix}`);
  }

  /** The value as a section with only `allowed` keys (each unknown one is reported), or undefined. */
  section(path: string, value: unknown, allowed: readonly string[], what: string): Section | undefined {
    if (!isSection(value)) {
      this.expected(path, what, value);
      return undefined;
    }
    for (const key of Object.keys(value)) {
      if (!allowed.includes(key)) this.add(childPath(path, key), unknownKeyMessage(key, allowed));
    }
    return value;
  }

  /** An integer in [min, max]; `fallback` when absent (undefined fallback: required). */
  integer(path: string, value: unknown, range: { min: number; max?: number; fallback?: number }): number | undefined {
    if (value === undefined && range.fallback !== undefined) return range.fallback;
    const { min, max } = range;
    if (typeof value === 'number' && Number.isInteger(value) && value >= min && (max === undefined || value <= max)) {
      return value;
    }
    this.expected(path, max === undefined ? `an integer >= ${min}` : `an integer from ${min} to ${max}`, value);
    return undefined;
  }

  /** A non-empty string, matching `pattern` when given (described by `what`). */
  string(path: string, value: unknown, options: { fallback?: string; pattern?: RegExp; what?: string } = {}): string | undefined {
    if (value === undefined && options.fallback !== undefined) return options.fallback;
    if (typeof value === 'string' && value !== '' && (options.pattern === undefined || options.pattern.test(value))) {
      return value;
    }
    this.expected(path, options.what ?? 'a non-empty string', value);
    return undefined;
  }

  boolean(path: string, value: unknown, fallback: boolean): boolean | undefined {
    if (value === undefined) return fallback;
    if (typeof value === 'boolean') return value;
    this.expected(path, 'true or false', value);
    return undefined;
  }
}
