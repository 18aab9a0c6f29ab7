import { InvalidOptionError } from '../errors.js';
import { CustomStatKeys, DEFAULT_CUSTOM_STATS_LIMIT } from '../instrumentation/custom-stats.js';
import type { OutboxEvent } from '../instrumentation/events.js';
import { MiddlewareChain, resolveMiddlewares } from '../instrumentation/middleware-chain.js';
import { type Emit, resolveRecorders } from '../instrumentation/recorders.js';
import type { ConnectionStringOptions, OutboxOptions } from '../outbox-options.js';
import { defaultRenderError, type RenderError } from '../subscriber/render-error.js';
import { type BodySchemas, resolveBodySchemas } from '../typed-events/body-schemas.js';
import type { AnyQueues } from '../typed-events/queue-map.js';
import { rejectUnknownOptions } from '../util/known-options.js';
import { consoleLogger, isLogger, type Logger } from '../util/logger.js';

/**
 * createTestOutbox()'s options: the real Outbox's options that shape what a handler sees and what
 * is recorded (same names, same types, same validation), plus the test's clock and drain bound.
 * Connection, pool, table and wake-up options have no meaning in memory and are not accepted.
 */
export interface TestOutboxOptions<Q = AnyQueues, I = Q>
  extends
    Pick<ConnectionStringOptions, 'recorder' | 'middlewares' | 'logger' | 'renderError' | 'customStatsLimit' | 'dlqTable'>,
    Pick<OutboxOptions<Q, I>, 'schemas'> {
  /** Where the test clock starts. @default the real time when the test outbox is created */
  readonly now?: Date | number;
  /** Deliveries one drain() makes at most before it throws DrainLimitError. @default 1000 */
  readonly maxDrainSteps?: number;
}

export interface ResolvedTestOutboxOptions {
  readonly logger: Logger;
  readonly emit: Emit;
  readonly middlewares: MiddlewareChain;
  readonly customStats: CustomStatKeys;
  readonly renderError: RenderError;
  /** false with `dlqTable: false`: terminal rows are deleted, as without a DLQ table. */
  readonly dlq: boolean;
  readonly now: Date | number | undefined;
  readonly maxDrainSteps: number;
  /** The `schemas` option, validated by the real resolver; undefined when none. */
  readonly schemas: BodySchemas | undefined;
}

const KNOWN = [
  'recorder',
  'middlewares',
  'logger',
  'renderError',
  'customStatsLimit',
  'dlqTable',
  'schemas',
  'now',
  'maxDrainSteps',
];
export const DEFAULT_MAX_DRAIN_STEPS = 1000;

/**
 * Validates once, with the real resolvers where there is one (recorders, middlewares, custom
 * stats). `record` receives every event before the user's recorders (the test outbox's `events`).
 */
export function resolveTestOutboxOptions(options: unknown, record: (event: OutboxEvent) => void): ResolvedTestOutboxOptions {
  if (options !== undefined && (typeof options !== 'object' || options === null || Array.isArray(options))) {
    throw new InvalidOptionError({ option: 'options', value: options, expected: 'an object of test outbox options' });
  }
  const raw = (options ?? {}) as Record<string, unknown>;
  rejectUnknownOptions(raw, 'createTestOutbox', KNOWN);
  const { logger, renderError, customStatsLimit, dlqTable, maxDrainSteps, now } = raw;
  if (logger !== undefined && !isLogger(logger)) {
    throw new InvalidOptionError({
      option: 'logger',
      value: logger,
      expected: 'an object with debug, info, warn and error methods',
    });
  }
  if (renderError !== undefined && typeof renderError !== 'function') {
    throw new InvalidOptionError({ option: 'renderError', value: renderError, expected: 'a function (error) => string | null' });
  }
  if (
    customStatsLimit !== undefined &&
    (typeof customStatsLimit !== 'number' || !Number.isInteger(customStatsLimit) || customStatsLimit < 0)
  ) {
    throw new InvalidOptionError({ option: 'customStatsLimit', value: customStatsLimit, expected: 'an integer >= 0' });
  }
  if (dlqTable !== undefined && dlqTable !== false && (typeof dlqTable !== 'string' || dlqTable === '')) {
    throw new InvalidOptionError({ option: 'dlqTable', value: dlqTable, expected: 'a table name, or false for no DLQ' });
  }
  if (
    maxDrainSteps !== undefined &&
    (typeof maxDrainSteps !== 'number' || !Number.isInteger(maxDrainSteps) || maxDrainSteps < 1)
  ) {
    throw new InvalidOptionError({ option: 'maxDrainSteps', value: maxDrainSteps, expected: 'an integer >= 1' });
  }
  if (now !== undefined && !(now instanceof Date) && typeof now !== 'number') {
    throw new InvalidOptionError({ option: 'now', value: now, expected: 'a Date or a number of ms since the epoch' });
  }
  const resolvedLogger = logger ?? consoleLogger();
  const recorders: unknown[] = raw.recorder === undefined ? [] : Array.isArray(raw.recorder) ? raw.recorder : [raw.recorder];
  // The user's recorders are validated as the real Outbox does; the event log comes first.
  resolveRecorders(raw.recorder, resolvedLogger);
  const emit = resolveRecorders([record, ...recorders], resolvedLogger);
  const middlewares = new MiddlewareChain(resolveMiddlewares(raw.middlewares), resolvedLogger);
  const customStats = new CustomStatKeys(customStatsLimit ?? DEFAULT_CUSTOM_STATS_LIMIT, resolvedLogger, (stat) => {
    middlewares.stat(stat);
  });
  return {
    logger: resolvedLogger,
    emit,
    middlewares,
    customStats,
    renderError: (renderError as RenderError | undefined) ?? defaultRenderError,
    dlq: dlqTable !== false,
    now: now,
    maxDrainSteps: maxDrainSteps ?? DEFAULT_MAX_DRAIN_STEPS,
    schemas: resolveBodySchemas(raw.schemas),
  };
}
