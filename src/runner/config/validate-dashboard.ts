import { resolveDashboardOptions } from '../../dashboard/dashboard-options.js';
import type { ConfigIssues } from './config-issues.js';
import { resolveReporting } from './library-options.js';
import type { DashboardConfig } from './runner-config.js';

const DASHBOARD_KEYS = ['enabled', 'host', 'port', 'token', 'readOnly'];
const PASSED_ON = ['host', 'port', 'token', 'readOnly'] as const;

/**
 * `dashboard:` (architecture/dashboard.md): absent, no dashboard; present, served by the runner
 * unless `enabled: false`. Its values are judged by the resolver startDashboard() runs (a host
 * other than loopback needs a token; a token is never shown in an issue), so the config and the
 * API accept the same values. Returns undefined when disabled or wrong (then with an issue).
 */
export function dashboardConfig(
  issues: ConfigIssues,
  value: unknown,
  metrics: { readonly host: string; readonly port: number; readonly enabled: boolean } | undefined,
): DashboardConfig | undefined {
  if (value === undefined) return undefined;
  const section = issues.section('dashboard', value, DASHBOARD_KEYS, 'a section { enabled, host, port, token, readOnly }');
  if (section === undefined) return undefined;
  const enabled = issues.boolean('dashboard.enabled', section.enabled, true);
  if (enabled !== true) return undefined;
  const given = Object.fromEntries(PASSED_ON.filter((key) => section[key] !== undefined).map((key) => [key, section[key]]));
  const resolved = resolveReporting(
    resolveDashboardOptions,
    given,
    { keyOf: (option) => option.replace(/^dashboard\./, ''), pathOf: (key) => `dashboard.${key}` },
    issues,
  );
  if (resolved === undefined) return undefined;
  if (metrics?.enabled === true && resolved.port !== 0 && resolved.port === metrics.port && resolved.host === metrics.host) {
    issues.add(
      'dashboard.port',
      `${resolved.port} is metrics.prometheus.port too: the runner serves both. Pick another port (the default is 9465), or 0 for any free one.`,
    );
    return undefined;
  }
  return {
    host: resolved.host,
    port: resolved.port,
    ...(resolved.token === undefined ? {} : { token: resolved.token }),
    readOnly: resolved.readOnly,
  };
}
