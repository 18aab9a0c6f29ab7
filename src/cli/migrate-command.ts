import { parseArgs } from 'node:util';

import { Outbox } from '../outbox.js';
import { migrationScript } from '../schema/migrate.js';
import { resolveSchemaNames } from '../schema/schema-names.js';
import { redactConnectionString } from '../util/redact.js';
import type { CommandIo } from './command-io.js';
import { CONNECTION_OPTIONS, pooling, resolveConnection, resolveTableNames } from './connection-options.js';
import { wholeNumber } from './option-values.js';
import { UsageError } from './usage.js';

/** `txoutbox migrate`: applies pending migrations, or prints them with --print. */
export async function migrateCommand(args: string[], io: CommandIo): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      ...CONNECTION_OPTIONS,
      'no-dlq': { type: 'boolean', default: false },
      print: { type: 'boolean', default: false },
      since: { type: 'string' },
      'lock-timeout-ms': { type: 'string' },
      'lock-attempts': { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values['no-dlq'] && values['dlq-table'] !== undefined) {
    throw new UsageError('--no-dlq and --dlq-table exclude each other');
  }
  const since = sinceVersion(values.since, values.print);
  const lockTimeoutMs = optionalNumber('--lock-timeout-ms', values['lock-timeout-ms'], values.print);
  const lockAttempts = optionalNumber('--lock-attempts', values['lock-attempts'], values.print);
  if (values.print) {
    const names = await resolveTableNames(values, io.env);
    io.out(migrationScript(resolveSchemaNames(names.table, values['no-dlq'] ? false : names.dlqTable), { since }));
    return;
  }
  const connection = await resolveConnection(values, io, ', or use --print to get the SQL');
  const { connectionString, table, dlqTable } = connection;
  const outbox = new Outbox({
    ...pooling(connection),
    connectionString,
    table,
    dlqTable: values['no-dlq'] ? false : dlqTable,
    poolSize: 1,
  });
  try {
    const { applied } = await outbox.migrate({ lockTimeoutMs, lockAttempts });
    const where = `${redactConnectionString(connectionString)} (${outbox.table})`;
    io.out(applied.length === 0 ? `schema is up to date on ${where}\n` : `applied ${applied.join(', ')} on ${where}\n`);
  } finally {
    await outbox.stop();
  }
}

/** `--lock-timeout-ms` / `--lock-attempts`: whole numbers, for applying (a printed script takes none). */
function optionalNumber(flag: string, value: string | undefined, print: boolean): number | undefined {
  if (value === undefined) return undefined;
  if (print) throw new UsageError(`${flag} goes without --print (the printed script runs in your own transaction)`);
  return wholeNumber(flag, value);
}

/** `--since <version>`: a whole number, with --print only (migrate() itself knows what is applied). */
function sinceVersion(value: string | undefined, print: boolean): number {
  if (value === undefined) return 0;
  if (!print) throw new UsageError('--since goes with --print (migrate applies exactly what the database lacks)');
  if (!/^\d+$/.test(value)) throw new UsageError(`--since takes a migration version (a whole number), got '${value}'`);
  return Number(value);
}
