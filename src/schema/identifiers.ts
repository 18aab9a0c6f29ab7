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
 * An identifier txoutbox builds from a table name: `<prefix><name><suffix>` (an index, a
 * constraint, the default DLQ table, the NOTIFY channel).
 */
export interface Derivation {
  readonly prefix: string;
  readonly suffix: string;
  /** For the message: "name", "NOTIFY channel". */
  readonly what: string;
  /** Another way out when this derivation is the one too long, e.g. ", or shorten the schema name". */
  readonly fix?: string;
}

function bytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/** The derivation that adds the most bytes: it alone sets the limit of the name it is built from. */
function longest(derivations: readonly Derivation[]): { derivation: Derivation | undefined; added: number } {
  let found: Derivation | undefined;
  let added = 0;
  for (const derivation of derivations) {
    const size = bytes(derivation.prefix) + bytes(derivation.suffix);
    if (size > added) {
      found = derivation;
      added = size;
    }
  }
  return { derivation: found, added };
}

/** The most bytes a table name may have so that every name derived from it fits in 63 bytes. */
export function maxTableNameBytes(derivations: readonly Derivation[]): number {
  return MAX_IDENTIFIER_BYTES - longest(derivations).added;
}

/**
 * Checks every identifier derived from `table` against Postgres' 63 bytes at once, so the error
 * states the real limit — the one the longest derived name sets — and blames `option`, the option
 * whose value the names are built from. Checking each derived name where it was built blamed
 * `dlqTable` for the default DLQ's index, an option the user never set, and the documented limit
 * (53, from `_ready_idx`) let through names whose `<table>_dlq_failed_idx` did not fit (issue 13,
 * item 14). `fix` adds another way out, such as a shorter dlqTable.
 */
export function checkDerivedNames(option: string, table: TableName, derivations: readonly Derivation[], fix = ''): void {
  const { derivation, added } = longest(derivations);
  const limit = MAX_IDENTIFIER_BYTES - added;
  const size = bytes(table.name);
  if (derivation === undefined || size <= limit) return;
  const derived = `${derivation.prefix}${table.name}${derivation.suffix}`;
  const why = `the derived ${derivation.what} "${derived}" would be ${size + added} bytes and Postgres' limit is ${MAX_IDENTIFIER_BYTES} bytes (longer names are silently truncated)`;
  throw new InvalidIdentifierError({
    option,
    identifier: table.display,
    reason:
      limit < 1
        ? `${why}; the schema name alone leaves no room for a table name. Fix: shorten the schema name`
        : `${why}, so the table name may have at most ${limit} bytes here and "${table.name}" has ${size}. Fix: shorten it to at most ${limit} bytes${derivation.fix ?? ''}${fix}`,
  });
}
