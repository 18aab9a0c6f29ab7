import { resolveConsumerSpanRelation } from '../../opentelemetry/span-relation.js';
import { TRACING_PEERS, tracingInstallCommand } from '../tracing/tracing-peers.js';
import { childPath, type ConfigIssues, isSection, type Section } from './config-issues.js';
import { resolveReporting } from './library-options.js';
import { RUNNER_DEFAULTS, type TracingConfig } from './runner-config.js';

const TRACING_KEYS = ['enabled', 'endpoint', 'headers', 'serviceName', 'sampler', 'consumerSpanRelation', 'skipUnsampledParents'];
const ENDPOINT_EXPECTED = 'an http:// or https:// URL of the OTLP/HTTP traces endpoint (e.g. http://127.0.0.1:4318/v1/traces)';
/** RFC 9110 `token`: what Node's http accepts as a header name. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Node's own check (`checkInvalidHeaderChar`): a CR or LF would fail every export, or split the request. */
const INVALID_HEADER_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

/** What a value is, without showing it: for keys whose values may be secrets. */
function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  return `a ${typeof value}`;
}

/**
 * `endpoint`: the URL the exporter POSTs to, verbatim (as OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, not
 * the base URL OTEL_EXPORTER_OTLP_ENDPOINT is). A bare origin is refused: the collector answers
 * 404 to every export there, and the spans are dropped with only a log line to say so. The value
 * is never echoed: a vendor endpoint may carry a key in its query string or userinfo.
 */
function endpoint(issues: ConfigIssues, value: unknown): string | undefined {
  if (value === undefined || value === '') {
    issues.expected('tracing.endpoint', ENDPOINT_EXPECTED, value);
    return undefined;
  }
  if (typeof value !== 'string') {
    issues.add('tracing.endpoint', `expected ${ENDPOINT_EXPECTED}, got ${kindOf(value)}`);
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    issues.add(
      'tracing.endpoint',
      `expected ${ENDPOINT_EXPECTED}, got a string that does not parse as a URL (not shown: it may hold a key)`,
    );
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    issues.add(
      'tracing.endpoint',
      `expected ${ENDPOINT_EXPECTED}, got a ${JSON.stringify(url.protocol)} URL${url.protocol === 'grpc:' ? " (OTLP over gRPC is not supported: use the collector's HTTP port, 4318 by default)" : ''}`,
    );
    return undefined;
  }
  if (url.pathname === '/' || url.pathname === '') {
    issues.add(
      'tracing.endpoint',
      `expected ${ENDPOINT_EXPECTED}, got a URL without a path: the exporter posts to it as written. Fix: ${url.origin}/v1/traces`,
    );
    return undefined;
  }
  return value;
}

/**
 * `headers`: sent with every export (a vendor's API key, `authorization`). Every value is a secret:
 * masked in every issue of the file, never logged. A whole-value `${VAR}` of digits arrives as a
 * number (interpolate-env.ts) and is sent as its text.
 */
function headers(issues: ConfigIssues, value: unknown): Record<string, string> | undefined {
  if (value === undefined) return {};
  if (!isSection(value)) {
    issues.expected('tracing.headers', 'a map of header names to values, e.g. { authorization: "Bearer ${OTLP_TOKEN}" }', value);
    return undefined;
  }
  for (const one of Object.values(value)) if (typeof one === 'string' || typeof one === 'number') issues.secret(String(one));
  const found: Record<string, string> = {};
  let valid = true;
  for (const [name, one] of Object.entries(value)) {
    const path = childPath('tracing.headers', name);
    if (!HEADER_NAME.test(name)) {
      issues.add(path, "expected a header name (letters, digits and !#$%&'*+.^_`|~-)");
      valid = false;
    } else if (!(typeof one === 'string' || (typeof one === 'number' && Number.isFinite(one)))) {
      // The kind only: the value is a secret.
      issues.add(path, `expected a string, got ${kindOf(one)}`);
      valid = false;
    } else if (INVALID_HEADER_VALUE.test(String(one))) {
      issues.add(path, 'expected a header value without control characters (a line break, say; the value is not shown)');
      valid = false;
    } else {
      found[name] = String(one);
    }
  }
  return valid ? found : undefined;
}

function sampler(issues: ConfigIssues, value: unknown): number | undefined {
  if (value === undefined) return RUNNER_DEFAULTS.tracing.sampler;
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= 1) return value;
  issues.expected(
    'tracing.sampler',
    'a sampling ratio from 0 to 1',
    value,
    'It samples the traces that start in the consumer (rows published without a trace); a row carrying a sampled or unsampled trace keeps that decision.',
  );
  return undefined;
}

/** The peers that do not resolve from here, as the child's import() will not either. */
function missingPeers(): string[] {
  return TRACING_PEERS.map((peer) => peer.name).filter((name) => {
    try {
      import.meta.resolve(name);
      return false;
    } catch {
      return true;
    }
  });
}

/**
 * `tracing:` (architecture/runner.md, Tracing): absent, or `enabled: false`, no tracing; present,
 * every child sets up the OpenTelemetry SDK and registers tracingMiddleware. Returns undefined when
 * disabled or wrong (then with an issue).
 */
export function tracingConfig(issues: ConfigIssues, value: unknown): TracingConfig | undefined {
  if (value === undefined) return undefined;
  const section: Section | undefined = issues.section(
    'tracing',
    value,
    TRACING_KEYS,
    'a section { endpoint, headers, serviceName, sampler, consumerSpanRelation, skipUnsampledParents, enabled }',
  );
  if (section === undefined) return undefined;
  const enabled = issues.boolean('tracing.enabled', section.enabled, true);
  if (enabled !== true) return undefined;
  const before = issues.count;
  const url = endpoint(issues, section.endpoint);
  const sent = headers(issues, section.headers);
  const serviceName = section.serviceName === undefined ? undefined : issues.string('tracing.serviceName', section.serviceName);
  const ratio = sampler(issues, section.sampler);
  const relation = resolveReporting(
    (options) => resolveConsumerSpanRelation(options.consumerSpanRelation),
    section.consumerSpanRelation === undefined ? {} : { consumerSpanRelation: section.consumerSpanRelation },
    { pathOf: (key) => `tracing.${key}` },
    issues,
  );
  // The child's sampler is always parent-based (child-tracing.ts), the case where skipping a
  // not-sampled row's span changes nothing that is exported (tracingMiddleware's option): on by
  // default here, unlike the library's middleware, which cannot know its sampler.
  const skipUnsampled = issues.boolean('tracing.skipUnsampledParents', section.skipUnsampledParents, true);
  const missing = missingPeers();
  if (missing.length > 0) {
    issues.add(
      'tracing',
      `needs the optional peer ${missing.length === 1 ? 'dependency' : 'dependencies'} ${missing.map((name) => JSON.stringify(name)).join(', ')}, which ${missing.length === 1 ? 'is' : 'are'} not installed. Fix: ${tracingInstallCommand(missing)}`,
    );
  }
  if (
    issues.count > before ||
    url === undefined ||
    sent === undefined ||
    ratio === undefined ||
    relation === undefined ||
    skipUnsampled === undefined
  ) {
    return undefined;
  }
  return {
    endpoint: url,
    headers: sent,
    ...(serviceName === undefined ? {} : { serviceName }),
    sampler: ratio,
    consumerSpanRelation: relation,
    skipUnsampledParents: skipUnsampled,
  };
}
