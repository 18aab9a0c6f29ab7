import { dirname } from 'node:path';

import { resolveOutboxOptions } from '../../outbox-options.js';
import { silentLogger } from '../../util/logger.js';
import { redactConnectionString } from '../../util/redact.js';
import { type ConfigIssues, isSection, type Section } from './config-issues.js';
import { resolveReporting } from './library-options.js';
import type { ConsumerConfig, PrometheusConfig, RunnerConfig, StatsdConfig } from './runner-config.js';
import { RUNNER_DEFAULTS } from './runner-config.js';
import { CONNECTION_KEYS, connectionConfig, connectionOptionPath, connectionOptions } from './validate-connection.js';
import { validateConsumer } from './validate-consumer.js';
import { dashboardConfig } from './validate-dashboard.js';
import { dlqRetentionMs } from './validate-dlq-retention.js';
import { checkPoolFloor } from './validate-pool-size.js';
import { validateRelays } from './validate-relay.js';
import { schemasConfig } from './validate-schemas.js';
import { tracingConfig } from './validate-tracing.js';

const TOP_KEYS = [
  'database',
  'table',
  'dlqTable',
  'dlqRetention',
  'gracefulTimeoutMs',
  'metrics',
  'consumers',
  'relays',
  'dashboard',
  'tracing',
  'schemas',
];
const DATABASE_KEYS = ['url', 'poolSize', 'queryTimeoutMs', ...CONNECTION_KEYS];
const METRICS_KEYS = ['prometheus', 'statsd'];
const PROMETHEUS_KEYS = ['enabled', 'host', 'port', 'prefix', 'queueStateLeader'];
const STATSD_KEYS = ['host', 'port', 'prefix'];

/** The same rule the Prometheus seams apply to their prefix (src/prometheus/options.ts). */
const METRIC_PREFIX = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/** Dot-separated segments: the statsd path is `prefix.host.consumer.key`. */
const STATSD_PREFIX = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const URL_EXPECTED = 'a postgres:// or postgresql:// URL';

/** The URL, or undefined with an issue that never shows the password. */
function databaseUrl(issues: ConfigIssues, value: unknown, path = 'database.url'): string | undefined {
  if (typeof value !== 'string' || value === '') {
    issues.expected(path, URL_EXPECTED, value);
    return undefined;
  }
  let protocol: string;
  try {
    protocol = new URL(value).protocol;
  } catch {
    // Not shown at all: an unparseable URL cannot be redacted reliably.
    issues.add(path, `expected ${URL_EXPECTED}, got a string that does not parse as a URL (not shown: it may hold a password)`);
    return undefined;
  }
  if (protocol !== 'postgres:' && protocol !== 'postgresql:') {
    issues.expected(path, URL_EXPECTED, redactConnectionString(value));
    return undefined;
  }
  return value;
}

/**
 * poolSize, queryTimeoutMs, table, dlqTable, gracefulTimeoutMs and the connection keys (validate-connection.ts)
 * are Outbox options: `new Outbox()`'s resolver judges them (identifiers included), on a placeholder URL. Its
 * pool never connects.
 */
async function outboxOptions(
  issues: ConfigIssues,
  top: Section,
  database: Section,
  listenUrl: string | undefined,
): Promise<boolean> {
  const given = Object.fromEntries(
    Object.entries({
      poolSize: database.poolSize,
      queryTimeoutMs: database.queryTimeoutMs,
      table: top.table,
      dlqTable: top.dlqTable,
      gracefulTimeoutMs: top.gracefulTimeoutMs,
      ...connectionOptions(database, listenUrl),
    }).filter(([, value]) => value !== undefined && value !== null), // null: reportEmptyValues says it
  );
  const resolved = resolveReporting(
    (options) => resolveOutboxOptions({ ...options, connectionString: 'postgres://localhost/txoutbox', logger: silentLogger }),
    given,
    { pathOf: (key) => connectionOptionPath(key) ?? (key === 'poolSize' || key === 'queryTimeoutMs' ? `database.${key}` : key) },
    issues,
  );
  await resolved?.pool.end();
  return resolved !== undefined;
}

function prometheus(issues: ConfigIssues, value: unknown): PrometheusConfig | undefined {
  const defaults = RUNNER_DEFAULTS.prometheus;
  if (value === undefined) return defaults;
  const section = issues.section(
    'metrics.prometheus',
    value,
    PROMETHEUS_KEYS,
    'a section { enabled, host, port, prefix, queueStateLeader }',
  );
  if (section === undefined) return undefined;
  const enabled = issues.boolean('metrics.prometheus.enabled', section.enabled, defaults.enabled);
  const host = issues.string('metrics.prometheus.host', section.host, {
    fallback: defaults.host,
    pattern: /^\S+$/,
    what: 'a host name or address, without spaces (127.0.0.1, 0.0.0.0, ::)',
  });
  const port = issues.integer('metrics.prometheus.port', section.port, { min: 0, max: 65_535, fallback: defaults.port });
  const prefix = issues.string('metrics.prometheus.prefix', section.prefix, {
    fallback: defaults.prefix,
    pattern: METRIC_PREFIX,
    what: 'a metric name prefix (letters, digits and _, not starting with a digit)',
  });
  const queueStateLeader = issues.boolean(
    'metrics.prometheus.queueStateLeader',
    section.queueStateLeader,
    defaults.queueStateLeader,
  );
  if (
    enabled === undefined ||
    host === undefined ||
    port === undefined ||
    prefix === undefined ||
    queueStateLeader === undefined
  ) {
    return undefined;
  }
  return { enabled, host, port, prefix, queueStateLeader };
}

function statsd(issues: ConfigIssues, value: unknown): StatsdConfig | undefined {
  const defaults = RUNNER_DEFAULTS.statsd;
  const section = issues.section('metrics.statsd', value, STATSD_KEYS, 'a section { host, port, prefix }');
  if (section === undefined) return undefined;
  const host = issues.string('metrics.statsd.host', section.host, { fallback: defaults.host });
  const port = issues.integer('metrics.statsd.port', section.port, { min: 1, max: 65_535, fallback: defaults.port });
  const prefix = issues.string('metrics.statsd.prefix', section.prefix, {
    fallback: defaults.prefix,
    pattern: STATSD_PREFIX,
    what: 'a statsd path prefix (dot-separated segments of letters, digits, _ and -)',
  });
  if (host === undefined || port === undefined || prefix === undefined) return undefined;
  return { host, port, prefix };
}

/** `consumers:`; absent is fine when `relays:` is there (a runner of relays only). */
function consumers(
  issues: ConfigIssues,
  value: unknown,
  context: { configDir: string; hasDlq: boolean; hasRelays: boolean },
): Map<string, ConsumerConfig> {
  const { configDir, hasDlq, hasRelays } = context;
  const found = new Map<string, ConsumerConfig>();
  if (value === undefined && hasRelays) return found;
  if (!isSection(value) || Object.keys(value).length === 0) {
    issues.expected(
      'consumers',
      'a section with at least one consumer (name: { handler, queues, … }), or a relays: section instead',
      value,
    );
    return found;
  }
  for (const [name, section] of Object.entries(value)) {
    const consumer = validateConsumer(issues, name, section, { configDir, hasDlq });
    if (consumer !== undefined) found.set(name, consumer);
  }
  return found;
}

/**
 * Validates a parsed, interpolated config; every problem goes to `issues`. Returns the config with
 * defaults applied, or undefined when anything was wrong.
 */
export async function validateRunnerConfig(
  value: unknown,
  file: string,
  issues: ConfigIssues,
): Promise<RunnerConfig | undefined> {
  const before = issues.count;
  const top = issues.section('', value, TOP_KEYS, 'a config with database and consumers sections');
  if (top === undefined) return undefined;
  const database = issues.section('database', top.database, DATABASE_KEYS, 'a section { url, poolSize, queryTimeoutMs }');
  const url = database === undefined ? undefined : databaseUrl(issues, database.url);
  const listenUrl = database?.listenUrl === undefined ? undefined : databaseUrl(issues, database.listenUrl, 'database.listenUrl');
  const outboxValid = await outboxOptions(issues, top, database ?? {}, listenUrl);

  const metrics = issues.section('metrics', top.metrics ?? {}, METRICS_KEYS, 'a section { prometheus, statsd }') ?? {};
  const prometheusConfig = prometheus(issues, metrics.prometheus);
  const statsdConfig = metrics.statsd === undefined ? undefined : statsd(issues, metrics.statsd);
  const hasDlq = top.dlqTable !== false;
  const consumerConfigs = consumers(issues, top.consumers, {
    configDir: dirname(file),
    hasDlq,
    hasRelays: top.relays !== undefined,
  });
  const consumerNames = isSection(top.consumers) ? Object.keys(top.consumers) : [];
  const relayConfigs = validateRelays(issues, top.relays, { hasDlq, consumerNames });
  const retentionMs = dlqRetentionMs(issues, top);
  const dashboard = dashboardConfig(issues, top.dashboard, prometheusConfig);
  checkPoolFloor(issues, database?.poolSize, { consumers: consumerConfigs, relays: relayConfigs, hasDlq });
  const tracing = tracingConfig(issues, top.tracing);
  const schemas = schemasConfig(issues, top.schemas, dirname(file));

  if (issues.count > before || url === undefined || !outboxValid || prometheusConfig === undefined) return undefined;
  const table = typeof top.table === 'string' ? top.table : RUNNER_DEFAULTS.table;
  return {
    file,
    database: {
      url,
      poolSize: typeof database?.poolSize === 'number' ? database.poolSize : undefined,
      queryTimeoutMs: typeof database?.queryTimeoutMs === 'number' ? database.queryTimeoutMs : RUNNER_DEFAULTS.queryTimeoutMs,
      ...connectionConfig(database ?? {}, listenUrl),
    },
    table,
    // The Outbox's default: "<table>_dlq" next to the outbox table.
    dlqTable: top.dlqTable === false ? false : typeof top.dlqTable === 'string' ? top.dlqTable : `${table}_dlq`,
    dlqRetentionMs: retentionMs,
    gracefulTimeoutMs: typeof top.gracefulTimeoutMs === 'number' ? top.gracefulTimeoutMs : RUNNER_DEFAULTS.gracefulTimeoutMs,
    metrics: { prometheus: prometheusConfig, statsd: statsdConfig },
    consumers: consumerConfigs,
    relays: relayConfigs,
    ...(dashboard === undefined ? {} : { dashboard }),
    ...(tracing === undefined ? {} : { tracing }),
    ...(schemas === undefined ? {} : { schemas }),
  };
}
