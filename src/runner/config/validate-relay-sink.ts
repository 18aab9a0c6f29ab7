import { isSecretName } from '../../util/redact.js';
import { childPath, type ConfigIssues, isSection, type Section } from './config-issues.js';
import { closest } from './did-you-mean.js';
import { resolveReporting } from './library-options.js';
import { RELAY_SINK_TYPE_NAMES, relaySinkType } from './relay-sink-types.js';
import type { RelayConfig } from './runner-config.js';

/** Header names whose values are secrets: the webhook sink's own rule (webhook-options.ts). */
const SECRET_HEADER = /auth|token|secret|key|cookie|signature|password|session/i;

/** Marks every secret value of a sink section, so no issue can show it (ConfigIssues.secret). */
function markSecrets(issues: ConfigIssues, section: Section, inHeaders = false): void {
  for (const [key, value] of Object.entries(section)) {
    // Secret option names at any depth of a sink section: `secret`, connectOptions' `pass` and
    // `token`, redisOptions' `password`, socketOptions' TLS `key` and `passphrase`.
    const secret = inHeaders ? SECRET_HEADER.test(key) : isSecretName(key);
    const values: unknown[] = Array.isArray(value) ? value : [value];
    for (const one of values) {
      if (secret && (typeof one === 'string' || typeof one === 'number')) issues.secret(String(one));
      else if (isSection(one)) markSecrets(issues, one, key.toLowerCase() === 'headers');
    }
  }
}

/** True when the package resolves from here, as the sink's own import() will in the child. */
function installed(peer: string): boolean {
  try {
    import.meta.resolve(peer);
    return true;
  } catch {
    return false;
  }
}

/** `headers["authorization"]`, `connectOptions.pass` → the sink section's key they are under. */
function keyOf(option: string): string {
  return /^[A-Za-z0-9_]+/.exec(option)?.[0] ?? option;
}

const EXPECTED_SECTION = `a section { type: ${RELAY_SINK_TYPE_NAMES.join(' | ')}, …the sink's options }`;

/**
 * Checks a relay's `sink:` section at `path`: a registered type, only that factory's option keys
 * (unknown ones with a did-you-mean, never their value: a misspelt `secert` holds the secret), its
 * client library installed, and every value by the factory's own resolver, which never connects.
 * Every secret in the section is masked in every issue of the file.
 */
export function validateRelaySink(issues: ConfigIssues, path: string, value: unknown): RelayConfig['sink'] | undefined {
  if (!isSection(value)) {
    issues.expected(path, EXPECTED_SECTION, value);
    return undefined;
  }
  markSecrets(issues, value);
  const typePath = childPath(path, 'type');
  const { type } = value;
  const sinkType = typeof type === 'string' ? relaySinkType(type) : undefined;
  if (sinkType === undefined || typeof type !== 'string') {
    const suggestion = typeof type === 'string' ? closest(type, RELAY_SINK_TYPE_NAMES) : undefined;
    issues.expected(
      typePath,
      `one of ${RELAY_SINK_TYPE_NAMES.join(', ')}`,
      type,
      suggestion === undefined
        ? 'A sink of your own runs from code: outbox.relay(queues, sink).'
        : `Did you mean ${JSON.stringify(suggestion)}?`,
    );
    return undefined;
  }
  const before = issues.count;
  const section = issues.section(path, value, ['type', ...sinkType.keys], `a ${type} sink section`);
  if (section === undefined) return undefined;
  if (sinkType.peer !== undefined && !installed(sinkType.peer)) {
    issues.add(
      typePath,
      `the ${type} sink needs the optional peer dependency "${sinkType.peer}", which is not installed. Fix: npm install ${sinkType.peer}`,
    );
  }
  // Known keys only: the factories' own unknown-key errors would echo the value.
  const options = Object.fromEntries(Object.entries(section).filter(([key]) => sinkType.keys.includes(key)));
  resolveReporting(
    (checked) => {
      sinkType.validate(checked);
      return true;
    },
    options,
    { keyOf, pathOf: (key) => childPath(path, key), standIns: sinkType.standIns },
    issues,
  );
  if (issues.count > before) return undefined;
  return { type, options };
}
