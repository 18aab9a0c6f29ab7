import { InvalidIdentifierError, InvalidOptionError, renderValue } from '../../errors.js';
import type { ConfigIssues, Section } from './config-issues.js';

/** How a library resolver's option names map onto config paths. */
export interface OptionPaths {
  /** The options key an error's `option` is about (`ExponentialRetry.jitter` → `jitter`). @default the option */
  readonly keyOf?: (option: string) => string;
  readonly pathOf: (key: string) => string;
  /**
   * A valid, most permissive stand-in for a key that failed, when another key is checked against it
   * (`maxPollIntervalMs >= minPollIntervalMs`): without it, dropping the bad key brings back its
   * default, and a valid neighbour would be reported against that default.
   */
  readonly standIns?: Section;
}

/**
 * Runs a library resolver on config values and reports every InvalidOptionError (and
 * InvalidIdentifierError) it raises at the config path, so the rules live in one place: the
 * resolver that `new Outbox()` / `subscribe()` / the retry classes run too. A resolver stops at its
 * first error, so the failing key is dropped (or given its stand-in) and the resolver runs again,
 * until it passes or an error names no key it was given. Returns the resolver's result when the
 * options had no problem at all, else undefined.
 */
export function resolveReporting<T>(
  resolve: (options: Section) => T,
  options: Section,
  paths: OptionPaths,
  issues: ConfigIssues,
): T | undefined {
  let current: Record<string, unknown> = { ...options };
  const replaced = new Set<string>();
  let failed = false;
  // Each round removes or replaces one key, so this ends; the bound is a guard, not the exit.
  for (let round = 0; round <= Object.keys(options).length + 1; round += 1) {
    try {
      const result = resolve(current);
      return failed ? undefined : result;
    } catch (error) {
      const problem = describe(error);
      if (problem === undefined) throw error;
      const key = paths.keyOf?.(problem.option) ?? problem.option;
      problem.report(issues, paths.pathOf(key));
      failed = true;
      if (!(key in current) || replaced.has(key)) return undefined;
      replaced.add(key);
      if (paths.standIns !== undefined && key in paths.standIns) current = { ...current, [key]: paths.standIns[key] };
      else current = Object.fromEntries(Object.entries(current).filter(([name]) => name !== key));
    }
  }
  return undefined;
}

function describe(error: unknown): { option: string; report: (issues: ConfigIssues, path: string) => void } | undefined {
  if (error instanceof InvalidOptionError) {
    return {
      option: error.option,
      report: (issues, path) => {
        issues.expected(path, error.expected, error.value, error.fix);
      },
    };
  }
  if (error instanceof InvalidIdentifierError) {
    return {
      option: error.option,
      report: (issues, path) => {
        issues.add(path, `${renderValue(error.identifier)} is not a valid identifier: ${error.reason}`);
      },
    };
  }
  return undefined;
}
