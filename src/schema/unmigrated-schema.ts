import { SchemaNotMigratedError } from '../errors.js';
import type { TableName } from './identifiers.js';

/** PostgreSQL's undefined_table. */
export const UNDEFINED_TABLE = '42P01';
/** PostgreSQL's undefined_column. */
export const UNDEFINED_COLUMN = '42703';

/**
 * The outbox columns added after 0.2's first schema that this version reads or writes on its hot
 * paths, with the migration that adds each; `since` is the version `txoutbox migrate --print
 * --since` starts after.
 */
export const ADDED_COLUMNS: Readonly<Record<string, { readonly name: string; readonly since: number }>> = {
  ordering_key: { name: 'outbox/0004', since: 3 },
  activate_at: { name: 'outbox/0005', since: 4 },
};

/** What a PostgreSQL error says, wherever the data layer put it. */
interface PostgresFailure {
  readonly code: string;
  readonly message: string;
}

/**
 * Where data layers keep the driver's error: Drizzle's `cause`, Sequelize's `parent`/`original`,
 * TypeORM's `driverError`, Prisma's `meta` (`meta.driverAdapterError.cause` on a driver adapter).
 * node-postgres, postgres.js, Knex, Kysely, MikroORM and TypeORM copy `code` onto the error they
 * throw.
 */
const WRAPPER_KEYS = ['cause', 'parent', 'original', 'driverError', 'meta', 'driverAdapterError'] as const;

/**
 * Every SQLSTATE-and-message pair in `error` and what it wraps, outermost first: `code` and
 * `message`, or Prisma's `originalCode` and `originalMessage`. A wrapper's own code (Prisma's P2010)
 * is one of them, so the caller tests each.
 */
function* postgresFailures(error: unknown, depth = 0): Generator<PostgresFailure> {
  if (typeof error !== 'object' || error === null || depth > 4) return;
  const fields = error as Record<string, unknown>;
  for (const [code, message] of [
    [fields.code, fields.message],
    [fields.originalCode, fields.originalMessage],
  ]) {
    if (typeof code === 'string' && typeof message === 'string') yield { code, message };
  }
  for (const key of WRAPPER_KEYS) yield* postgresFailures(fields[key], depth + 1);
}

/** The column of ADDED_COLUMNS an undefined_column message names (`column "activate_at" of relation …`, `column w.activate_at …`). */
function addedColumnIn(message: string): string | undefined {
  return Object.keys(ADDED_COLUMNS).find((column) => new RegExp(`\\bcolumn "?(?:\\w+\\.)?${column}\\b`).test(message));
}

/**
 * A producer statement's error as SchemaNotMigratedError when it says the outbox table, or a
 * column this version added, does not exist; undefined for any other error, including the same
 * SQLSTATEs about something else (a user's trigger reading a field its row lacks).
 */
export function unmigratedSchemaError(error: unknown, table: TableName, operation: string): SchemaNotMigratedError | undefined {
  for (const { code, message } of postgresFailures(error)) {
    const column = code === UNDEFINED_COLUMN ? addedColumnIn(message) : undefined;
    if (column !== undefined) {
      return new SchemaNotMigratedError({
        operation,
        table: table.display,
        missing: column,
        migration: ADDED_COLUMNS[column],
        cause: error,
      });
    }
    // Postgres quotes the relation as the statement spelled it: "outbox" or "txoutbox.outbox".
    const named = message.includes(`"${table.name}"`) || message.includes(`.${table.name}"`);
    if (code === UNDEFINED_TABLE && named) {
      return new SchemaNotMigratedError({ operation, table: table.display, missing: table.name, cause: error });
    }
  }
  return undefined;
}
