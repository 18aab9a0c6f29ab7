import { relaySubscribeOptions } from '../../relay/relay-options.js';
import type { RelaySink } from '../../relay/sink.js';
import { resolveSubscribeOptions } from '../../subscriber/subscription-options.js';
import { childPath, type ConfigIssues, isSection } from './config-issues.js';
import { resolveReporting } from './library-options.js';
import { type RelayConfig, RUNNER_DEFAULTS } from './runner-config.js';
import { checkProcessName, NO_HANDLER, STAND_INS, SUBSCRIBE_KEYS, withRetryStrategy } from './validate-consumer.js';
import { validateRelaySink } from './validate-relay-sink.js';

/**
 * relay() takes subscribe()'s options (RelayOptions omits only ackPolicy), so a relay section takes
 * the consumer's keys. `ackPolicy` stays among them so that relay()'s own resolver refuses it with
 * its reason (a relay's outcome is the broker's), instead of an unknown-key message that does not
 * say why.
 */
const OPTION_KEYS = SUBSCRIBE_KEYS;
export const RELAY_KEYS = ['queues', 'processes', 'sink', ...OPTION_KEYS];

/** relaySubscribeOptions() reads only the sink's name (the default subscriber name, which the config always sets). */
const PLACEHOLDER_SINK: RelaySink = { name: 'config', send: () => Promise.resolve(), close: () => Promise.resolve() };

export interface RelayContext {
  readonly hasDlq: boolean;
  /** Names under `consumers:`: a relay may not take one (they share the process, metric and log label). */
  readonly consumerNames: readonly string[];
}

/** Checks one `relays.<name>` section; every problem goes to `issues`. */
export function validateRelay(
  issues: ConfigIssues,
  name: string,
  value: unknown,
  context: RelayContext,
): RelayConfig | undefined {
  const path = childPath('relays', name);
  const before = issues.count;
  checkProcessName(issues, path, name, 'relay');
  if (context.consumerNames.includes(name)) {
    issues.add(
      path,
      `${JSON.stringify(name)} is also the name of ${childPath('consumers', name)}: consumers and relays share one namespace (the process, metric and log label). Rename one of them.`,
    );
  }
  const section = issues.section(path, value, RELAY_KEYS, 'a relay section { queues, sink, … }');
  if (section === undefined) return undefined;

  const processes = issues.integer(childPath(path, 'processes'), section.processes, {
    min: 1,
    fallback: RUNNER_DEFAULTS.processes,
  });
  if (section.queues === undefined) issues.expected(childPath(path, 'queues'), 'a queue name or a list of them', undefined);
  const sink = validateRelaySink(issues, childPath(path, 'sink'), section.sink);

  const subscribe: Record<string, unknown> = Object.fromEntries(
    Object.entries(section).filter(([key]) => OPTION_KEYS.includes(key)),
  );
  const options = withRetryStrategy(issues, path, { ...subscribe, name, queues: section.queues ?? STAND_INS.queues });
  // What the child runs: relay()'s options (RELAY_DEFAULTS under the file's) judged by subscribe()'s resolver.
  const resolved = resolveReporting(
    ({ queues, ...rest }) =>
      resolveSubscribeOptions(queues, NO_HANDLER, relaySubscribeOptions(PLACEHOLDER_SINK, rest), context.hasDlq),
    options,
    { pathOf: (key) => (key === 'name' ? path : childPath(path, key)), standIns: STAND_INS },
    issues,
  );
  if (issues.count > before || resolved === undefined || sink === undefined || processes === undefined) return undefined;
  return { name, queues: resolved.queues, processes, sink, subscribe };
}

/** The `relays:` section (absent: none); a present one holds at least one relay. */
export function validateRelays(issues: ConfigIssues, value: unknown, context: RelayContext): Map<string, RelayConfig> {
  const found = new Map<string, RelayConfig>();
  if (value === undefined) return found;
  if (!isSection(value) || Object.keys(value).length === 0) {
    issues.expected('relays', 'a section with at least one relay (name: { queues, sink: { type, … }, … })', value);
    return found;
  }
  for (const [name, section] of Object.entries(value)) {
    const relay = validateRelay(issues, name, section, context);
    if (relay !== undefined) found.set(name, relay);
  }
  return found;
}
