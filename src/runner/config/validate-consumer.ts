import { resolveSubscribeOptions, type SubscribeOptions } from '../../subscriber/subscription-options.js';
import { childPath, type ConfigIssues } from './config-issues.js';
import { resolveReporting } from './library-options.js';
import { moduleFile } from './module-file.js';
import { validateRetry } from './retry-config.js';
import { type ConsumerConfig, RUNNER_DEFAULTS } from './runner-config.js';

/**
 * Every subscribe() option a consumer section may set. A Record over SubscribeOptions' keys, so the
 * compiler fails here when subscribe() gains an option the config does not know. `name` is the
 * consumer's key under `consumers`.
 */
const SUBSCRIBE_OPTIONS: Record<Exclude<keyof SubscribeOptions, 'name'>, true> = {
  concurrency: true,
  fetchBatchSize: true,
  leaseTtlMs: true,
  minPollIntervalMs: true,
  maxPollIntervalMs: true,
  maxDeliveries: true,
  retry: true,
  ackPolicy: true,
  leaseRenewIntervalMs: true,
  handlerTimeoutMs: true,
  dlq: true,
  transactional: true,
  lease: true,
  isolationLevel: true,
};
export const SUBSCRIBE_KEYS = Object.keys(SUBSCRIBE_OPTIONS);
export const CONSUMER_KEYS = ['handler', 'export', 'queues', 'processes', ...SUBSCRIBE_KEYS];

/** The name is a metric label value and a statsd path segment (where a dot would nest the path). */
const PROCESS_NAME = /^[A-Za-z0-9_-]+$/;

/** Reports a consumer's or relay's name that cannot be a label and a path segment. */
export function checkProcessName(issues: ConfigIssues, path: string, name: string, what: 'consumer' | 'relay'): void {
  if (!PROCESS_NAME.test(name)) {
    issues.add(path, `a ${what} name is letters, digits, _ and - (it is a metric label and a statsd path segment)`);
  }
}

/**
 * Valid stand-ins for a failed option that another one is checked against (see OptionPaths): the
 * most permissive value of each, so the neighbour is judged on its own.
 */
export const STAND_INS = { queues: ['queue'], minPollIntervalMs: 1, leaseTtlMs: 24 * 3600 * 1000 };

// resolveSubscribeOptions checks the handler is a function; the real one is loaded in the child.
export const NO_HANDLER = (): Promise<void> => Promise.resolve();

/**
 * The options to give the resolver: `retry` checked (its issues reported) and replaced by the
 * strategy it builds, or left out when it is wrong, so the other options are still judged.
 */
export function withRetryStrategy(issues: ConfigIssues, path: string, options: Record<string, unknown>): Record<string, unknown> {
  if (options.retry === undefined) return options;
  const retry = validateRetry(issues, childPath(path, 'retry'), options.retry);
  const checked = { ...options, retry: retry?.strategy };
  if (retry === undefined) delete checked.retry;
  return checked;
}

export interface ConsumerContext {
  /** Directory of the config file: relative handler paths start there. */
  readonly configDir: string;
  readonly hasDlq: boolean;
}

/** Checks one `consumers.<name>` section; every problem goes to `issues`. */
export function validateConsumer(
  issues: ConfigIssues,
  name: string,
  value: unknown,
  context: ConsumerContext,
): ConsumerConfig | undefined {
  const path = childPath('consumers', name);
  const before = issues.count;
  checkProcessName(issues, path, name, 'consumer');
  const section = issues.section(path, value, CONSUMER_KEYS, 'a consumer section { handler, queues, … }');
  if (section === undefined) return undefined;

  const handlerPath = moduleFile(issues, childPath(path, 'handler'), section.handler, context.configDir, 'handler module');
  const handlerExport = issues.string(childPath(path, 'export'), section.export, { fallback: RUNNER_DEFAULTS.handlerExport });
  const processes = issues.integer(childPath(path, 'processes'), section.processes, {
    min: 1,
    fallback: RUNNER_DEFAULTS.processes,
  });
  if (section.queues === undefined) issues.expected(childPath(path, 'queues'), 'a queue name or a list of them', undefined);

  const subscribe: Record<string, unknown> = Object.fromEntries(
    Object.entries(section).filter(([key]) => SUBSCRIBE_KEYS.includes(key)),
  );
  const options = withRetryStrategy(issues, path, { ...subscribe, name, queues: section.queues ?? STAND_INS.queues });
  const resolved = resolveReporting(
    ({ queues, ...rest }) => resolveSubscribeOptions(queues, NO_HANDLER, rest, context.hasDlq),
    options,
    { pathOf: (key) => (key === 'name' ? path : childPath(path, key)), standIns: STAND_INS },
    issues,
  );
  if (issues.count > before || resolved === undefined || handlerPath === undefined) return undefined;
  if (handlerExport === undefined || processes === undefined) return undefined;
  return { name, handlerPath, handlerExport, queues: resolved.queues, processes, subscribe };
}
