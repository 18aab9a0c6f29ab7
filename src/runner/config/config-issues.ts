import { type ConfigIssue, renderValue } from '../../errors.js';
import { unknownKeyMessage } from './did-you-mean.js';

export type Section = Readonly<Record<string, unknown>>;

export function isSection(value: unknown): value is Section {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const PLAIN_KEY = /^[A-Za-z0-9_-]+$/;

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
  /** Paths whose value a plain `${VAR}` typed (interpolate-env.ts) → the reference and its type. */
  readonly #typedFromEnv = new Map<string, { readonly reference: string; readonly as: string }>();

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
   * `reference` (a whole plain `${VAR}`) at `path` was typed `as` a number or a boolean. An issue
   * at that path, or at a section or list holding it, says so and how to keep the text: the
   * value's own text is a digit string, and "expected a string, got 2024" alone does not explain.
   */
  typedFromEnv(path: string, reference: string, as: string): void {
    this.#typedFromEnv.set(path, { reference, as });
  }

  add(path: string, message: string): void {
    if (this.#paths.has(path)) return;
    this.#paths.add(path);
    this.#issues.push({ path, message: message + this.#typedHint(path) });
  }

  #typedHint(path: string): string {
    for (const [typedPath, { reference, as }] of this.#typedFromEnv) {
      const within = typedPath === path || typedPath.startsWith(`${path}.`) || typedPath.startsWith(`${path}[`);
      if (within) return ` (${reference} was read as ${as}; to keep its text, quote it: "${reference}")`;
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
