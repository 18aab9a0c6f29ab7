import pg from 'pg';

import { errorMessage } from '../errors.js';
import type { Logger } from '../util/logger.js';
import { endWithin, ownConnectionConfig } from '../util/owned-pool.js';
import { applicationName, withApplicationName } from './application-name.js';
import type { RunnerConfig } from './config/runner-config.js';
import { type ConfigBudget, configBudget, type ProcessBudget } from './connection-budget.js';

/** What the server allows and uses now. */
export interface ServerConnections {
  readonly maxConnections: number;
  /** superuser_reserved_connections (+ reserved_connections on 16+): not ours to use. */
  readonly reserved: number;
  /** Client backends connected now, the reading one excluded. */
  readonly inUse: number;
}

/** Past this share of what the server allows, the start-up line becomes a warning. */
export const APPROACHING_SHARE = 0.8;

const READ_TIMEOUT_MS = 5_000;

/** $none. reserved_connections exists from PostgreSQL 16 on: missing_ok reads NULL before. */
const SERVER_CONNECTIONS = `SELECT current_setting('max_connections')::int AS max_connections,
  current_setting('superuser_reserved_connections')::int + coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved,
  (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()) AS in_use`;

/**
 * max_connections and the connections in use, on a connection of its own (closed at once; the
 * supervisor's pool does not exist yet), bounded by READ_TIMEOUT_MS. No session state: it goes
 * through PgBouncer as well as to the server (where the numbers are then the server's).
 */
export async function readServerConnections(url: string): Promise<ServerConnections> {
  const client = new pg.Client({
    ...ownConnectionConfig({ connectionString: withApplicationName(url, applicationName(undefined)) }),
    connectionTimeoutMillis: READ_TIMEOUT_MS,
    query_timeout: READ_TIMEOUT_MS,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ max_connections: number; reserved: number; in_use: number }>(SERVER_CONNECTIONS);
    const row = rows[0];
    if (row === undefined) throw new Error('no row');
    return { maxConnections: row.max_connections, reserved: row.reserved, inUse: row.in_use };
  } finally {
    await endWithin(client, READ_TIMEOUT_MS);
  }
}

function processText({ pool, listen, notify }: ProcessBudget): string {
  return `pool ${pool}${listen === 1 ? ' + LISTEN' : ''}${notify === 1 ? ' + NOTIFY' : ''}`;
}

/** `emails 7 (pool 5 + LISTEN + NOTIFY) × 2, …, supervisor 3 (pool 2 + queue-state lock) = 31 per host`. */
export function budgetText(budget: ConfigBudget): string {
  const served = budget.served.map(
    (entry) => `${entry.name} ${entry.perProcess.total} (${processText(entry.perProcess)}) × ${entry.processes}`,
  );
  const supervisor =
    budget.leaderSession === 1
      ? `supervisor ${budget.supervisor} (pool ${budget.supervisor - 1} + queue-state lock)`
      : `supervisor ${budget.supervisor}`;
  return `${[...served, supervisor].join(', ')} = ${budget.perHost} per host`;
}

/** Connections of this config that reach the server itself: all of them, or behind a transaction pooler only the direct ones (LISTEN, and the queue-state lock's session with listenUrl). */
export function serverSide(config: RunnerConfig, budget: ConfigBudget): number {
  if (!config.database.transactionPooling) return budget.perHost;
  // The queue-state lock's session goes where LISTEN goes: straight to the server with listenUrl.
  const directSession: number = config.database.listenUrl === undefined ? 0 : budget.leaderSession;
  return budget.served.reduce((sum, entry) => sum + entry.processes * entry.perProcess.listen, directSession);
}

/**
 * The start-up line of `txoutbox run`: the config's connection budget per process and per host
 * (connection-budget.ts), and against the server's max_connections how many hosts running this
 * config fit. A warning when this host would take the server past APPROACHING_SHARE of what it
 * allows. The server's numbers are best effort: when they cannot be read the budget is still logged.
 */
export async function reportConnectionBudget(
  config: RunnerConfig,
  logger: Logger,
  read: (url: string) => Promise<ServerConnections> = readServerConnections,
): Promise<void> {
  const budget = configBudget(config);
  const text = budgetText(budget);
  const fields = {
    perHost: budget.perHost,
    perProcess: Object.fromEntries(budget.served.map((entry) => [entry.name, entry.perProcess.total])),
    supervisor: budget.supervisor,
  };
  let server: ServerConnections;
  try {
    server = await read(config.database.url);
  } catch (error) {
    logger.info({ ...fields, server: `unread: ${errorMessage(error)}` }, `connection budget: ${text}`);
    return;
  }
  const usable = server.maxConnections - server.reserved;
  const direct = serverSide(config, budget);
  const free = usable - server.inUse;
  const hostsFit = direct === 0 ? undefined : Math.max(0, Math.floor(free / direct));
  const pooler = config.database.transactionPooling
    ? `; through a transaction pooler: the server sees PgBouncer's server connections (its default_pool_size per database and user) plus ${direct} direct connections per host`
    : '';
  const serverText = `server max_connections ${server.maxConnections} (${server.reserved} reserved), ${server.inUse} in use: ${hostsFit === undefined ? 'no direct connections' : `${hostsFit} host${hostsFit === 1 ? '' : 's'} of this config fit`}${pooler}`;
  const withServer = { ...fields, serverSide: direct, maxConnections: server.maxConnections, inUse: server.inUse, hostsFit };
  if (server.inUse + direct > APPROACHING_SHARE * usable) {
    logger.warn(
      withServer,
      `connection budget: ${text}; ${serverText} — this host takes the server to ${server.inUse + direct} of ${usable} connections. Lower processes or poolSize, put PgBouncer in front (architecture/pgbouncer.md), or raise max_connections`,
    );
    return;
  }
  logger.info(withServer, `connection budget: ${text}; ${serverText}`);
}
