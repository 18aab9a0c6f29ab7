import { parseArgs } from 'node:util';

import type { DashboardOptions } from '../dashboard/dashboard-options.js';
import { startDashboard } from '../dashboard/dashboard-server.js';
import { Outbox } from '../outbox.js';
import { beforeDeadline } from '../util/deadline.js';
import { consoleLogger } from '../util/logger.js';
import { CONNECTION_OPTIONS, pooling, resolveConnection } from './connection-options.js';
import { logLevelOf, nonEmpty } from './environment.js';
import { wholeNumber } from './option-values.js';
import { untilStopSignal } from './stop-signal.js';
import { flagError, UsageError } from './usage.js';

export interface DashboardIo {
  readonly env: NodeJS.ProcessEnv;
  out(text: string): void;
  err(text: string): void;
}

const OPTIONS = {
  ...CONNECTION_OPTIONS,
  host: { type: 'string' },
  port: { type: 'string' },
  token: { type: 'string' },
  'read-only': { type: 'boolean', default: false },
  'lease-ttl-ms': { type: 'string' },
} as const;

/** The environment variable that carries the token (a flag would show in `ps`). */
export const TOKEN_ENV = 'TXOUTBOX_DASHBOARD_TOKEN';

/** How long the dashboard's Outbox may take to close its pool on the way out. */
const OUTBOX_STOP_MS = 5_000;

/** The dashboard's option names as the command spells them. */
const FLAG_OF: Readonly<Record<string, string>> = {
  'dashboard.host': '--host',
  'dashboard.port': '--port',
  'dashboard.token': `--token (or ${TOKEN_ENV})`,
  'dashboard.leaseTtlMs': '--lease-ttl-ms',
};

/**
 * `txoutbox dashboard`: the web dashboard on its own, on an Outbox of its own (no subscriber).
 * Prints `txoutbox dashboard listening on <url>` once it listens, serves until SIGTERM/SIGINT, then
 * closes the server and the pool within a few seconds. Resolves with the exit code.
 */
export async function dashboardCommand(args: string[], io: DashboardIo): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: true });
  if (positionals.length > 0) throw new UsageError(`dashboard takes no argument, got '${positionals[0]}'`);
  const port = values.port === undefined ? undefined : wholeNumber('--port', values.port);
  const leaseTtlMs = values['lease-ttl-ms'] === undefined ? undefined : wholeNumber('--lease-ttl-ms', values['lease-ttl-ms']);
  const connection = await resolveConnection(values, io);
  const { connectionString, table, dlqTable, config } = connection;
  // --config also gives the file's dashboard: section (the runner's), under the flags and the env;
  // the implicit ./txoutbox.yaml gives only the database, as for every other command.
  const file = values.config === undefined ? undefined : config?.dashboard;
  const host = values.host ?? file?.host;
  const chosenPort = port ?? file?.port;
  const token = nonEmpty(values.token) ?? nonEmpty(io.env[TOKEN_ENV]) ?? file?.token;
  const options: DashboardOptions = {
    ...(host === undefined ? {} : { host }),
    ...(chosenPort === undefined ? {} : { port: chosenPort }),
    ...(token === undefined ? {} : { token }),
    ...(leaseTtlMs === undefined ? {} : { leaseTtlMs }),
    readOnly: values['read-only'] || file?.readOnly === true,
    // Actions (pause, redrive, purge) are logged at info on stderr; stdout has the one URL line.
    logger: consoleLogger(logLevelOf(io.env)),
  };
  // Pages run a few statements each (status and peek side by side): a handful of connections.
  const outbox = new Outbox({ ...pooling(connection), connectionString, table, dlqTable, poolSize: 4 });
  try {
    const dashboard = await startDashboard(outbox, options).catch((error: unknown) => {
      throw flagError(error, FLAG_OF) ?? error;
    });
    io.out(`txoutbox dashboard listening on ${dashboard.url}\n`);
    await untilStopSignal(consoleLogger('warn'), 'stop signal while stopping: the dashboard is closing');
    await dashboard.close();
    return 0;
  } finally {
    await beforeDeadline(outbox.stop(), OUTBOX_STOP_MS, () => undefined);
  }
}
