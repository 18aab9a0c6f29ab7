import pg from 'pg';

import { errorMessage } from '../errors.js';
import type { Logger } from '../util/logger.js';
import { endWithin, ownConnectionConfig } from '../util/owned-pool.js';
import { applicationName, withApplicationName } from './application-name.js';
import { consumerPlans } from './config/consumer-plans.js';
import type { RunnerConfig } from './config/runner-config.js';
import { type ConfigBudget, configBudget, type ProcessBudget } from './connection-budget.js';
import { sameSpec } from './rollout.js';

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

/** A process's connections that reach the server: all, or behind a transaction pooler its LISTEN only. */
function serverSidePerProcess(config: RunnerConfig, perProcess: ProcessBudget): number {
  return config.database.transactionPooling ? perProcess.listen : perProcess.total;
}

/**
 * The most connections a reload from `running` to `next` opens before the processes it replaces
 * close theirs, server side: a new consumer's processes, the ones a higher count adds, and for a
 * consumer whose spec changed its probation replacement (one at a time per consumer: rollout.ts),
 * all at once across consumers. An upper bound: a spec change and a higher count are added up.
 */
export function reloadSurplus(running: RunnerConfig, next: RunnerConfig): number {
  const before = new Map(configBudget(running).served.map((entry) => [entry.name, entry]));
  const runningPlans = consumerPlans(running);
  const nextPlans = consumerPlans(next);
  let surplus = 0;
  for (const entry of configBudget(next).served) {
    const perProcess = serverSidePerProcess(next, entry.perProcess);
    const old = before.get(entry.name);
    const oldTotal = old === undefined ? 0 : old.processes * serverSidePerProcess(running, old.perProcess);
    surplus += Math.max(0, entry.processes * perProcess - oldTotal);
    const [was, now] = [runningPlans.get(entry.name), nextPlans.get(entry.name)];
    if (was !== undefined && now !== undefined && !sameSpec(was.spec, now.spec)) surplus += perProcess;
  }
  return surplus;
}

/**
 * Before a reload rolls out: a warning when the connections it opens before the old processes
 * close (reloadSurplus) take the server past APPROACHING_SHARE of what it allows. The start-up
 * line judged the config alone; a rollout runs old and new processes side by side, and a server
 * near its max_connections refused the new ones (the reload then stopped, or worse, another
 * client of the server was refused). Silent when it fits; best effort when the server cannot be read.
 */
export async function reportReloadBudget(
  running: RunnerConfig,
  next: RunnerConfig,
  logger: Logger,
  read: (url: string) => Promise<ServerConnections> = readServerConnections,
): Promise<void> {
  const surplus = reloadSurplus(running, next);
  if (surplus === 0) return;
  let server: ServerConnections;
  try {
    server = await read(next.database.url);
  } catch {
    return; // the reload goes on; its own processes say what the server refuses
  }
  const usable = server.maxConnections - server.reserved;
  if (server.inUse + surplus <= APPROACHING_SHARE * usable) return;
  logger.warn(
    { surplus, inUse: server.inUse, maxConnections: server.maxConnections, reserved: server.reserved },
    `config reload: the rollout opens up to ${surplus} connections before the processes it replaces close theirs, taking the server to ${server.inUse + surplus} of ${usable} connections. Change fewer consumers per reload, lower processes or poolSize, put PgBouncer in front (architecture/pgbouncer.md), or raise max_connections`,
  );
}
