import { resolveRetentionMs } from '../../dlq/retention-options.js';
import { renderValue } from '../../errors.js';
import type { ConfigIssues, Section } from './config-issues.js';
import { resolveReporting } from './library-options.js';

/**
 * `dlqRetention` (a duration such as `14d`, or milliseconds), judged by the resolver
 * enforceRetention() runs, so the config and the API accept the same values. Without a DLQ there
 * is nothing to keep or delete: the key is an error then, not silently ignored.
 */
export function dlqRetentionMs(issues: ConfigIssues, top: Section): number | undefined {
  if (top.dlqRetention === undefined) return undefined;
  if (top.dlqTable === false) {
    issues.add(
      'dlqRetention',
      `there is no DLQ to enforce a retention on (dlqTable: false), got ${renderValue(top.dlqRetention)}. Remove dlqRetention, or remove dlqTable: false to archive dead letters.`,
    );
    return undefined;
  }
  return resolveReporting(
    (options) => resolveRetentionMs('dlqRetention', options.dlqRetention),
    { dlqRetention: top.dlqRetention },
    { pathOf: (key) => key },
    issues,
  );
}
