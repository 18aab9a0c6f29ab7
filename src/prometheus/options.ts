import type { Registry, RegistryContentType } from 'prom-client';

import { InvalidOptionError } from '../errors.js';
import { rejectUnknownOptions } from '../util/known-options.js';
import { consoleLogger, isLogger, type Logger } from '../util/logger.js';

/** A prom-client registry of either content type (render.ts serves both formats from either). */
export type AnyRegistry = Registry<RegistryContentType>;

/** Options both Prometheus seams share. */
export interface PrometheusBaseOptions {
  /**
   * Where the metrics are registered. Required: txoutbox never falls back to prom-client's global
   * registry, so two libraries (or two tests) cannot collide in it behind the user's back.
   */
  readonly registry: AnyRegistry;
  /** Metric name prefix. `'faststream'` makes FastStream's Grafana dashboards work unchanged. @default 'txoutbox' */
  readonly prefix?: string;
  /** The `app_name` label. @default the prefix (FastStream's middleware does the same) */
  readonly appName?: string;
}

export interface ResolvedBaseOptions {
  readonly registry: AnyRegistry;
  readonly prefix: string;
  readonly appName: string;
}

export const DEFAULT_PREFIX = 'txoutbox';

/** Metric names are `<prefix>_…`: the prefix must itself be a valid name (colons are for recording rules). */
const METRIC_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function isRegistry(value: unknown): value is AnyRegistry {
  const candidate = value as Partial<AnyRegistry> | null;
  return (
    typeof candidate === 'object' &&
    candidate !== null &&
    typeof candidate.registerMetric === 'function' &&
    typeof candidate.getSingleMetric === 'function' &&
    typeof candidate.getMetricsAsJSON === 'function'
  );
}

/**
 * Validates the options object of `what` (unknown keys included: a typo such as `metricsPrefix`
 * would otherwise be ignored silently) and resolves the shared ones.
 */
export function resolveBaseOptions(
  options: unknown,
  what: string,
  known: readonly string[],
): { raw: Record<string, unknown>; base: ResolvedBaseOptions } {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidOptionError({
      option: 'options',
      value: options,
      expected: `an object of ${what} options ({ registry, … })`,
    });
  }
  const raw = options as Record<string, unknown>;
  rejectUnknownOptions(raw, what, known);
  if (!isRegistry(raw.registry)) {
    throw new InvalidOptionError({
      option: 'registry',
      value: raw.registry === undefined ? undefined : typeof raw.registry,
      expected: "a prom-client Registry (import { Registry } from 'prom-client'; new Registry())",
      fix: 'txoutbox never registers into the global registry: pass the registry your /metrics endpoint serves.',
    });
  }
  const prefix = raw.prefix ?? DEFAULT_PREFIX;
  if (typeof prefix !== 'string' || !METRIC_NAME.test(prefix)) {
    throw new InvalidOptionError({
      option: 'prefix',
      value: prefix,
      expected: 'a metric name prefix matching [a-zA-Z_][a-zA-Z0-9_]*',
    });
  }
  const appName = raw.appName ?? prefix;
  if (typeof appName !== 'string') {
    throw new InvalidOptionError({ option: 'appName', value: appName, expected: 'a string (the app_name label)' });
  }
  return { raw, base: { registry: raw.registry, prefix, appName } };
}

/** Histogram buckets: finite upper bounds in increasing order (prom-client adds +Inf itself). */
export function resolveBuckets(option: string, value: unknown, fallback: readonly number[]): number[] {
  if (value === undefined) return [...fallback];
  const valid =
    Array.isArray(value) &&
    value.length > 0 &&
    value.every(
      (bound: unknown, index) =>
        typeof bound === 'number' && Number.isFinite(bound) && (index === 0 || bound > (value[index - 1] as number)),
    );
  if (!valid) {
    throw new InvalidOptionError({
      option,
      value,
      expected: 'a non-empty array of finite numbers in strictly increasing order (+Inf is added by prom-client)',
    });
  }
  return [...(value as number[])];
}

/**
 * The `logger` option of a seam that warns: the Outbox's own default (JSON lines on stderr,
 * warnings and errors) when left out. A seam is built before the Outbox it is passed to, so it
 * cannot use that Outbox's logger unless it is given it.
 */
export function resolveLogger(value: unknown): Logger {
  if (value === undefined) return consoleLogger();
  if (!isLogger(value)) {
    throw new InvalidOptionError({
      option: 'logger',
      value,
      expected: 'an object with debug, info, warn and error methods (a pino logger fits)',
      fix: 'Pass the logger you pass to the Outbox, or leave logger out for JSON lines on stderr.',
    });
  }
  return value;
}
