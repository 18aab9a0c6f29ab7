import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

import { errorMessage } from '../errors.js';
import { loadRunnerConfig } from '../runner/config/load-config.js';
import type { RunnerConfig } from '../runner/config/runner-config.js';
import { DEFAULT_TABLE } from '../schema/schema-names.js';
import { nonEmpty } from './environment.js';
import { OptionError } from './usage.js';

/** The parseArgs options every command that talks to a database takes (migrate, dlq, status, queue, schema). */
export const CONNECTION_OPTIONS = {
  'database-url': { type: 'string' },
  config: { type: 'string' },
  table: { type: 'string' },
  'dlq-table': { type: 'string' },
} as const;

export interface ConnectionValues {
  readonly 'database-url'?: string | undefined;
  readonly config?: string | undefined;
  readonly table?: string | undefined;
  readonly 'dlq-table'?: string | undefined;
}

/** The runner's config file, read from the working directory when nothing else names a database. */
export const DEFAULT_CONFIG_FILE = 'txoutbox.yaml';

export interface Connection {
  /** Holds the password: show it only through redactConnectionString. */
  readonly connectionString: string;
  readonly table: string;
  /** undefined: the Outbox default (`<table>_dlq`); false: no DLQ (a config's `dlqTable: false`). */
  readonly dlqTable: string | false | undefined;
  /** The config file read (`--config`, or the implicit ./txoutbox.yaml), loaded once; undefined when none was. */
  readonly config?: RunnerConfig;
}

export interface ConnectionIo {
  readonly env: NodeJS.ProcessEnv;
  /** Where the implicit ./txoutbox.yaml is announced; absent: not announced. */
  err?(text: string): void;
}

type Names = Pick<Connection, 'table' | 'dlqTable'>;

/**
 * Where a command's database and tables come from. Exactly one source gives the URL, the first of:
 *
 * 1. `--database-url`;
 * 2. `--config <file>`: the runner's txoutbox.yaml, read by the runner's own loader (validation,
 *    `${VAR}` interpolation); it also gives the table names. Named explicitly, it wins over the
 *    ambient $DATABASE_URL, so `--config prod.yaml` never acts on the database of the shell;
 * 3. `$DATABASE_URL`;
 * 4. `./txoutbox.yaml` when it exists (announced on stderr): the config next to which an operator
 *    usually stands; never read when any of the above is given.
 *
 * `--table` and `--dlq-table` override the config's names; a `--table` without `--dlq-table`
 * takes its own `<table>_dlq` (the config's DLQ belongs to the config's table), unless the config
 * turns the DLQ off. Nothing found, or a config that cannot be used, is an OptionError (exit 2)
 * naming the flag and the fix. `hint` adds an alternative to the "no database" fix.
 */
export async function resolveConnection(values: ConnectionValues, io: ConnectionIo, hint = ''): Promise<Connection> {
  // `--database-url ''` (an unset shell variable) counts as not given, as DATABASE_URL='' does.
  const flagUrl = nonEmpty(values['database-url']);
  const fromFlags = { connectionString: flagUrl, ...tableNames(values, undefined) };
  if (values.config !== undefined) {
    const config = await readConfig(values.config, '--config', io.env, EXPLICIT_FIX);
    return {
      ...fromFlags,
      connectionString: flagUrl ?? config.database.url,
      ...tableNames(values, config),
      config,
    };
  }
  const url = flagUrl ?? nonEmpty(io.env.DATABASE_URL);
  if (url !== undefined) return { ...fromFlags, connectionString: url };
  const implicit = resolve(DEFAULT_CONFIG_FILE);
  if (existsSync(implicit)) {
    io.err?.(`txoutbox: using ${implicit} (no --database-url, --config or DATABASE_URL given)\n`);
    const config = await readConfig(implicit, `./${DEFAULT_CONFIG_FILE}`, io.env, IMPLICIT_FIX);
    return { connectionString: config.database.url, ...tableNames(values, config), config };
  }
  throw new OptionError({
    option: '--database-url',
    problem: `no database to connect to (no --database-url, no --config, no DATABASE_URL, and no ${DEFAULT_CONFIG_FILE} in ${process.cwd()})`,
    fix: `pass --database-url postgres://…, set DATABASE_URL, or pass --config <txoutbox.yaml>${hint}.`,
  });
}

/**
 * The table names alone, for what needs no database (`migrate --print`): from the flags, or from an
 * explicit `--config` (never the implicit file: printing SQL must not depend on where one stands).
 */
export async function resolveTableNames(values: ConnectionValues, env: NodeJS.ProcessEnv): Promise<Names> {
  const config = values.config === undefined ? undefined : await readConfig(values.config, '--config', env, EXPLICIT_FIX);
  return tableNames(values, config);
}

function tableNames(values: ConnectionValues, config: Pick<RunnerConfig, 'table' | 'dlqTable'> | undefined): Names {
  const table = values.table ?? config?.table ?? DEFAULT_TABLE;
  if (values['dlq-table'] !== undefined) return { table, dlqTable: values['dlq-table'] };
  if (config === undefined) return { table, dlqTable: undefined };
  if (config.dlqTable === false) return { table, dlqTable: false };
  return { table, dlqTable: values.table === undefined ? config.dlqTable : undefined };
}

const EXPLICIT_FIX = 'correct the file (the one `txoutbox run` reads: every problem is listed above with its line).';
const IMPLICIT_FIX = `correct it, or name the database with --database-url, DATABASE_URL or --config <file> (then ./${DEFAULT_CONFIG_FILE} is not read).`;

async function readConfig(path: string, option: string, env: NodeJS.ProcessEnv, fix: string): Promise<RunnerConfig> {
  try {
    return await loadRunnerConfig(path, env);
  } catch (error) {
    // ConfigError's message lists every problem with file:line and no secret (load-config.ts).
    throw new OptionError({
      option,
      problem: errorMessage(error),
      fix,
      cause: error,
    });
  }
}

/**
 * The config's transactionPooling and preparedStatements for the command's own Outbox, so a
 * command reads the database the way the runner does (through PgBouncer in transaction mode:
 * architecture/pgbouncer.md). None without a config: `--database-url` and $DATABASE_URL connect
 * with the Outbox defaults.
 */
export function pooling(connection: Connection): { transactionPooling?: boolean; preparedStatements?: boolean } {
  const database = connection.config?.database;
  if (database === undefined) return {};
  return {
    transactionPooling: database.transactionPooling,
    ...(database.preparedStatements === undefined ? {} : { preparedStatements: database.preparedStatements }),
  };
}
