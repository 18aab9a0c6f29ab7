/**
 * `txoutbox/dashboard`: the web dashboard, served on its own (`startDashboard(outbox)`, or
 * `txoutbox dashboard`) or by the runner (`dashboard:` in txoutbox.yaml). architecture/dashboard.md.
 */
export type { DashboardOutbox } from './dashboard-context.js';
export { type DashboardOptions, DEFAULT_DASHBOARD_HOST, DEFAULT_DASHBOARD_PORT, MIN_TOKEN_LENGTH } from './dashboard-options.js';
export { type ServedDashboard, startDashboard } from './dashboard-server.js';
export type { DashboardConsumer, DashboardProcesses } from './processes.js';
