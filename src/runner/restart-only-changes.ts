import type { RunnerConfig } from './config/runner-config.js';

/**
 * The settings the runner process itself applies once, at start: its /metrics endpoint (and its own
 * series' prefix), the DLQ retention it runs, the dashboard it serves, and its own connection and
 * tables (/readyz, the queue-state gauges, the dashboard, retention). A SIGHUP rolls the consumers
 * out with the new file, these stay as they were until a restart. In file order, by config key.
 */
const RESTART_ONLY: readonly (readonly [string, (config: RunnerConfig) => unknown])[] = [
  ['database.url', (c) => c.database.url],
  ['database.transactionPooling', (c) => c.database.transactionPooling],
  ['database.preparedStatements', (c) => c.database.preparedStatements],
  // The supervisor's queue-state lock session opens where LISTEN goes.
  ['database.listenUrl', (c) => c.database.listenUrl],
  ['table', (c) => c.table],
  ['dlqTable', (c) => c.dlqTable],
  ['dlqRetention', (c) => c.dlqRetentionMs],
  ['metrics.prometheus', (c) => c.metrics.prometheus],
  ['dashboard', (c) => c.dashboard],
];

/** The restart-only settings `next` changes from the config the runner started with (names only: a URL holds a password). */
export function restartOnlyChanges(started: RunnerConfig, next: RunnerConfig): string[] {
  return RESTART_ONLY.filter(([, read]) => JSON.stringify(read(started)) !== JSON.stringify(read(next))).map(([name]) => name);
}
