import { InvalidIdentifierError } from '../errors.js';
import { Outbox } from '../outbox.js';
import { redactConnectionString } from '../util/redact.js';
import { type Connection, pooling } from './connection-options.js';
import { flagError, OptionError } from './usage.js';

/**
 * Runs one ops command (dlq, status, queue, schema) on an Outbox of its own: one connection, no
 * subscriber, stopped whatever happens. The API's InvalidOptionError for a value the user typed
 * (`flagOf` maps the API option to its flag: `state` → `--state`) becomes an OptionError naming the
 * flag and the fix (exit 2); any other error reaches the terminal with the connection string's
 * password masked.
 */
export async function withOutbox<T>(
  connection: Connection,
  flagOf: Readonly<Record<string, string>>,
  run: (outbox: Outbox) => Promise<T>,
): Promise<T> {
  const { connectionString, table, dlqTable } = connection;
  let outbox: Outbox;
  try {
    outbox = new Outbox({ ...pooling(connection), connectionString, table, dlqTable, poolSize: 1 });
  } catch (error) {
    // A table name or URL the user typed: bad usage naming the flag (exit 2), as any other flag's.
    throw connectionFlagError(error) ?? redacted(error, connectionString);
  }
  try {
    return await run(outbox);
  } catch (error) {
    throw flagError(error, flagOf) ?? redacted(error, connectionString);
  } finally {
    await outbox.stop();
  }
}

/** The Outbox options the connection flags give, by flag. */
const CONNECTION_FLAGS: Readonly<Record<string, string>> = {
  connectionString: '--database-url',
  table: '--table',
  dlqTable: '--dlq-table',
};

function connectionFlagError(error: unknown): OptionError | undefined {
  if (error instanceof InvalidIdentifierError) {
    const flag = CONNECTION_FLAGS[error.option];
    if (flag === undefined) return undefined;
    return new OptionError({
      option: flag,
      problem: `${JSON.stringify(error.identifier)} is not a valid identifier: ${error.reason}`,
      fix: 'pass a table name of letters, digits and underscores, optionally schema-qualified (app.outbox).',
      cause: error,
    });
  }
  return flagError(error, CONNECTION_FLAGS);
}

/** Errors reach the terminal: the connection string's password must not ride along in one. */
function redacted(error: unknown, connectionString: string): unknown {
  if (!(error instanceof Error)) return error;
  error.message = error.message.replaceAll(connectionString, redactConnectionString(connectionString));
  const password = passwordOf(connectionString);
  if (password !== '') error.message = error.message.replaceAll(password, '***');
  return error;
}

function passwordOf(connectionString: string): string {
  try {
    return decodeURIComponent(new URL(connectionString).password);
  } catch {
    return /password\s*=\s*('[^']*'|\S+)/i.exec(connectionString)?.[1] ?? '';
  }
}
