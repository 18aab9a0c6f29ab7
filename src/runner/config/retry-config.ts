import { InvalidOptionError } from '../../errors.js';
import type { BoundedRetryOptions } from '../../retry/bounded-retry.js';
import type { RetryStrategy } from '../../retry/retry-strategy.js';
import {
  ConstantRetry,
  type ConstantRetryOptions,
  ExponentialRetry,
  type ExponentialRetryOptions,
  LinearRetry,
  type LinearRetryOptions,
  NoRetry,
} from '../../retry/strategies.js';
import { childPath, type ConfigIssues, isSection, type Section } from './config-issues.js';
import { resolveReporting } from './library-options.js';

/**
 * A consumer's `retry:` section, `{ strategy, ...the strategy class's options }`, and the strategy
 * instance it stands for. The classes validate their own options; the config only knows which keys
 * each one takes. The Record types below make the compiler list every option of each class, so a new
 * option cannot be forgotten here (`random` is for tests and has no config form).
 */

type OptionKeys<Options> = Record<Exclude<keyof Options, 'random'>, true>;

const BOUNDED: OptionKeys<BoundedRetryOptions> = { maxAttempts: true, maxTotalDelayMs: true, jitter: true };
const EXPONENTIAL: OptionKeys<ExponentialRetryOptions> = { ...BOUNDED, initialDelayMs: true, multiplier: true, maxDelayMs: true };
const CONSTANT: OptionKeys<ConstantRetryOptions> = { ...BOUNDED, delayMs: true };
const LINEAR: OptionKeys<LinearRetryOptions> = { ...BOUNDED, initialDelayMs: true, stepMs: true };

const STRATEGY_KEYS = {
  exponential: Object.keys(EXPONENTIAL),
  constant: Object.keys(CONSTANT),
  linear: Object.keys(LINEAR),
  none: [] as string[],
};

export type RetryStrategyName = keyof typeof STRATEGY_KEYS;
export const RETRY_STRATEGIES = Object.keys(STRATEGY_KEYS) as RetryStrategyName[];

function isStrategyName(value: unknown): value is RetryStrategyName {
  return typeof value === 'string' && (RETRY_STRATEGIES as string[]).includes(value);
}

const STRATEGY_EXPECTED = `one of ${RETRY_STRATEGIES.join(', ')}`;
const SECTION_EXPECTED = `a section { strategy: ${RETRY_STRATEGIES.join(' | ')}, … }`;

/** Builds the strategy a `retry:` section describes; throws the class's InvalidOptionError (`ExponentialRetry.jitter`). */
export function retryFromConfig(section: unknown): RetryStrategy {
  if (!isSection(section)) {
    throw new InvalidOptionError({ option: 'retry', value: section, expected: SECTION_EXPECTED });
  }
  const { strategy } = section;
  if (!isStrategyName(strategy)) {
    throw new InvalidOptionError({ option: 'retry.strategy', value: strategy, expected: STRATEGY_EXPECTED });
  }
  // Only the keys the class takes: anything else (a stray `random`) never reaches a constructor.
  const options = Object.fromEntries(STRATEGY_KEYS[strategy].filter((key) => key in section).map((key) => [key, section[key]]));
  switch (strategy) {
    case 'exponential':
      return new ExponentialRetry(options as unknown as ExponentialRetryOptions);
    case 'constant':
      return new ConstantRetry(options as unknown as ConstantRetryOptions);
    case 'linear':
      return new LinearRetry(options as unknown as LinearRetryOptions);
    case 'none':
      return new NoRetry();
  }
}

/**
 * Checks a `retry:` section at `path`: the strategy name, the keys that strategy takes (unknown ones
 * with a did-you-mean) and every value, by constructing the real class. Returns the section when it
 * is valid, with the strategy it builds.
 */
export function validateRetry(
  issues: ConfigIssues,
  path: string,
  value: unknown,
): { section: Section; strategy: RetryStrategy } | undefined {
  if (!isSection(value)) {
    issues.expected(path, SECTION_EXPECTED, value);
    return undefined;
  }
  const { strategy } = value;
  if (!isStrategyName(strategy)) {
    issues.expected(childPath(path, 'strategy'), STRATEGY_EXPECTED, strategy);
    return undefined;
  }
  const before = issues.count;
  const allowed = ['strategy', ...STRATEGY_KEYS[strategy]];
  const section = issues.section(path, value, allowed, 'a section');
  if (section === undefined) return undefined;
  const options = Object.fromEntries(Object.entries(section).filter(([key]) => key !== 'strategy' && allowed.includes(key)));
  const built = resolveReporting(
    (checked) => retryFromConfig({ strategy, ...checked }),
    options,
    // `ExponentialRetry.initialDelayMs` → `initialDelayMs`
    { keyOf: (option) => option.slice(option.indexOf('.') + 1), pathOf: (key) => childPath(path, key) },
    issues,
  );
  if (built === undefined || issues.count > before) return undefined;
  return { section, strategy: built };
}
