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
export const ADDED_COLUMNS = {
  ordering_key: { name: 'outbox/0004', since: 3 },
  activate_at: { name: 'outbox/0005', since: 4 },
} as const satisfies AddedColumns;

/** The same for the DLQ table, which `outbox.dlq` reads and writes (a redrive also writes the outbox's ordering_key). */
export const DLQ_ADDED_COLUMNS: AddedColumns = {
  last_exception_type: { name: 'dlq/0002', since: 1 },
  ordering_key: { name: 'dlq/0004', since: 3 },
};

/** A column added by a migration after a table's first: the migration, and the version its `--since` script starts after. */
export type AddedColumns = Readonly<Record<string, { readonly name: string; readonly since: number }>>;

/** What a PostgreSQL error says, wherever the data layer put it. */
interface PostgresFailure {
  readonly code: string;
  readonly message: string;
  /** PostgreSQL's context: set when a function raised it (a trigger's statement), not the statement's own parse. */
  readonly where: unknown;
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
    if (typeof code === 'string' && typeof message === 'string') yield { code, message, where: fields.where };
  }
  for (const key of WRAPPER_KEYS) yield* postgresFailures(fields[key], depth + 1);
}

/** Where `name` last stands as a whole word in `message` (-1: nowhere), in any lc_messages language, whatever quotes it uses. */
function lastMention(message: string, name: string): number {
  const word = new RegExp(`(?<![\\w$])${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![\\w$])`, 'g');
  let last = -1;
  for (const match of message.matchAll(word)) last = match.index;
  return last;
}

/**
 * The added column an undefined_column message names. The last one mentioned: Knex puts the
 * statement, which lists every column, before PostgreSQL's message.
 */
function missingColumn(message: string, columns: AddedColumns): string | undefined {
  let found: string | undefined;
  let at = -1;
  for (const column of Object.keys(columns)) {
    const index = lastMention(message, column);
    if (index > at) [found, at] = [column, index];
  }
  return found;
}

/**
 * A statement's error as SchemaNotMigratedError when it says `table`, or a column of `columns`
 * (this version's additions to it), does not exist; undefined for any other error. A producer
 * statement references no other table, and of the columns that may be missing only those, so an
 * undefined_table or undefined_column raised by the statement itself is about them. One a function
 * raised (a user's trigger reading a field its row lacks, or inserting into a missing table) has
 * PostgreSQL's `where` context and is passed through; where a data layer drops it (Prisma), the
 * name must still be the table's or an added column's. Names, not message wording, are matched:
 * translated server messages (lc_messages) keep them.
 */
export function unmigratedSchemaError(
  error: unknown,
  table: TableName,
  operation: string,
  columns: AddedColumns = ADDED_COLUMNS,
): SchemaNotMigratedError | undefined {
  for (const { code, message, where } of postgresFailures(error)) {
    if (typeof where === 'string' && where !== '') continue;
    if (code === UNDEFINED_COLUMN) {
      const column = missingColumn(message, columns);
      if (column === undefined) continue;
      return new SchemaNotMigratedError({
        operation,
        table: table.display,
        missing: column,
        migration: columns[column],
        cause: error,
      });
    }
    if (code === UNDEFINED_TABLE && lastMention(message, table.name) >= 0) {
      return new SchemaNotMigratedError({ operation, table: table.display, missing: table.name, cause: error });
    }
  }
  return undefined;
}
