import { InvalidIdentifierError } from '../errors.js';

/**
 * Table names are configurable, so every identifier that reaches SQL is validated here once and
 * quoted. Values never go through this path: they are always bound parameters.
 *
 * Postgres truncates identifiers longer than NAMEDATALEN - 1 = 63 bytes silently, which would make
 * two derived names collide or an index lookup miss; we refuse them instead, including the names
 * we derive (indexes, constraint, NOTIFY channel). See architecture/schema.md.
 */
export const MAX_IDENTIFIER_BYTES = 63;

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Quotes an identifier that already passed validation. */
export function quoteIdent(identifier: string): string {
  return `"${identifier.replaceAll('"', '""')}"`;
}

function checkIdentifier(option: string, identifier: string): void {
  if (!IDENTIFIER.test(identifier)) {
    throw new InvalidIdentifierError({
      option,
      identifier,
      reason: 'use letters, digits and underscores, starting with a letter or underscore (for example "outbox" or "app.outbox")',
    });
  }
  const bytes = Buffer.byteLength(identifier, 'utf8');
  if (bytes > MAX_IDENTIFIER_BYTES) {
    throw new InvalidIdentifierError({
      option,
      identifier,
      reason: `it is ${bytes} bytes long and Postgres' limit is ${MAX_IDENTIFIER_BYTES} bytes (longer names are silently truncated)`,
    });
  }
}

/** A possibly schema-qualified table name, validated, with its SQL spelling. */
export interface TableName {
  /** The schema, or undefined to use the connection's search_path. */
  readonly schema: string | undefined;
  readonly name: string;
  /** Quoted, qualified: `"app"."outbox"`. */
  readonly sql: string;
  /** Unquoted, for messages: `app.outbox`. */
  readonly display: string;
}

export function parseTableName(option: string, value: unknown): TableName {
  if (typeof value !== 'string' || value === '') {
    throw new InvalidIdentifierError({
      option,
      identifier: String(value),
      reason: 'expected a non-empty string such as "outbox" or "app.outbox"',
    });
  }
  const parts = value.split('.');
  if (parts.length > 2) {
    throw new InvalidIdentifierError({ option, identifier: value, reason: 'expected "table" or "schema.table"' });
  }
  const [first, second] = parts as [string, string | undefined];
  const schema = second === undefined ? undefined : first;
  const name = second ?? first;
  if (schema !== undefined) checkIdentifier(option, schema);
  checkIdentifier(option, name);
  return {
    schema,
    name,
    sql: schema === undefined ? quoteIdent(name) : `${quoteIdent(schema)}.${quoteIdent(name)}`,
    display: value,
  };
}

/**
 * Derives a sibling name (index, constraint) from a table name and validates the result, so a
 * table name that is fine on its own but too long for its derived names fails at construction.
 */
export function derivedName(option: string, table: TableName, suffix: string): string {
  const derived = `${table.name}${suffix}`;
  if (Buffer.byteLength(derived, 'utf8') > MAX_IDENTIFIER_BYTES) {
    throw new InvalidIdentifierError({
      option,
      identifier: table.display,
      reason: `the derived name "${derived}" is ${Buffer.byteLength(derived, 'utf8')} bytes and Postgres' limit is ${MAX_IDENTIFIER_BYTES} bytes; shorten the table name to at most ${MAX_IDENTIFIER_BYTES - suffix.length} bytes`,
    });
  }
  return derived;
}

/**
 * The NOTIFY channel for a table. It includes the schema when one is given, so two outbox tables
 * with the same name in different schemas do not wake each other's subscribers. Channel names are
 * identifiers too (63 bytes).
 */
export function channelName(option: string, table: TableName): string {
  const channel = table.schema === undefined ? `txoutbox.${table.name}` : `txoutbox.${table.schema}.${table.name}`;
  if (Buffer.byteLength(channel, 'utf8') > MAX_IDENTIFIER_BYTES) {
    throw new InvalidIdentifierError({
      option,
      identifier: table.display,
      reason: `the derived NOTIFY channel "${channel}" is ${Buffer.byteLength(channel, 'utf8')} bytes and Postgres' limit is ${MAX_IDENTIFIER_BYTES} bytes; shorten the schema or table name`,
    });
  }
  return channel;
}
