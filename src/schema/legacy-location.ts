import type pg from 'pg';

import { TableInOtherSchemaError } from '../errors.js';
import { quoteIdent, type TableName } from './identifiers.js';
import { DEFAULT_SCHEMA, MIGRATIONS_TABLE, type SchemaNames } from './schema-names.js';
import { buildSchemaSql } from './sql.js';

/**
 * The upgrade from 0.1, whose default table was an unqualified `outbox` (so `public.outbox`), to
 * the `txoutbox` schema of its own (issue 14, item 2). A process of the new version must not
 * migrate a second, empty `txoutbox.outbox` while the rows — and the publishes of processes still
 * on 0.1 — sit in `public.outbox`: nothing would ever consume them. So `migrate()`,
 * `validateSchema()` and the script of `migrate --print` (its first statement, legacyGuardBlock)
 * look where 0.1 would have looked, and refuse with both names and the fix. Once
 * `txoutbox.outbox` exists, 0.1's table still holding rows is reported by stranded-rows.ts.
 *
 * Only for tables in the `txoutbox` schema, the one the default moved to: an explicit
 * `billing.outbox` beside an older `public.outbox` is two outboxes on purpose.
 * architecture/schema.md, "Upgrading from 0.1", describes this; change both together.
 */

/** Columns only a txoutbox outbox table has together (a table merely named "outbox" is not ours). */
const OUTBOX_COLUMNS = ['queue', 'payload', 'acquired_token', 'acquired_at', 'next_attempt_at', 'deliveries_count'];
/** The same for the DLQ. */
const DLQ_COLUMNS = ['original_id', 'queue', 'payload', 'failure_reason', 'failed_at'];

/**
 * $1 = the table's quoted, qualified name; $2 = the bare name, quoted, resolved through search_path
 * as 0.1 resolved it; $3 = the schema the options name; $4 = the columns that make it ours; $5 =
 * the bookkeeping table's name. One row when a table of txoutbox's shape with that bare name is in
 * another schema (its twin), with whether that schema keeps a bookkeeping table to carry the history
 * over, and whether the table the options name exists as well: missing, migrating would create the
 * empty second outbox (TableInOtherSchemaError); present, the twin's rows may be stranded.
 * Catalog reads only; the same text runs inside the DO block of the printed script.
 */
const FIND_TWIN_SQL = `SELECT n.nspname AS schema,
  to_regclass(quote_ident(n.nspname) || '.' || quote_ident($5::text)) IS NOT NULL AS has_history,
  to_regclass($1::text) IS NOT NULL AS table_exists
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($2::text) AND c.relkind IN ('r', 'p') AND n.nspname <> $3::text
  AND (SELECT count(*) FROM pg_attribute a
       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY($4::text[]))
    = cardinality($4::text[])`;

export interface Twin {
  readonly schema: string;
  readonly has_history: boolean;
  readonly table_exists: boolean;
}

export type Queryable = Pick<pg.ClientBase, 'query'>;

/** FIND_TWIN_SQL's parameters for one table. */
function twinParams(table: TableName, columns: readonly string[]): unknown[] {
  return [table.sql, quoteIdent(table.name), table.schema, columns, MIGRATIONS_TABLE];
}

/** The outbox table's 0.1 twin, when the table is in the `txoutbox` schema and one exists. */
export async function findOutboxTwin(db: Queryable, names: SchemaNames): Promise<Twin | undefined> {
  if (names.outbox.schema !== DEFAULT_SCHEMA) return undefined;
  const { rows } = await db.query<Twin>(FIND_TWIN_SQL, twinParams(names.outbox, OUTBOX_COLUMNS));
  return rows[0];
}

/** The DLQ looked for only where the default moved it: a DLQ in the `txoutbox` schema. */
function dlqSearched(names: SchemaNames): TableName | undefined {
  return names.dlq?.schema === DEFAULT_SCHEMA ? names.dlq : undefined;
}

/**
 * Where the twin was found, as the error spells it: a schema name (`public`) and that name quoted
 * for SQL. The DO block passes placeholders instead, so both the error and the block come from
 * these functions.
 */
interface Spelling {
  readonly schema: string;
  readonly quoted: string;
}

/**
 * The move's statements: the schema, the outbox and the tables migrations created beside it (the
 * pause and stats tables, when a newer txoutbox migrated it in place with `table: 'public.outbox'`
 * or an unqualified `table`), the DLQ when it moves along, and the history. A history recorded under
 * either spelling (`outbox`, `public.outbox`) goes along under the bare name, which the default
 * table's history is read by: left behind, migrate() ran 0002 again (`column … already exists`)
 * and every claim read a pause table that was not there.
 */
function moveStatements(names: SchemaNames, at: Spelling, dlqMoves: boolean) {
  const { outbox, dlq, paused, stats } = names;
  const to = quoteIdent(DEFAULT_SCHEMA);
  const from = (name: string): string => `${at.quoted}.${quoteIdent(name)}`;
  const moved = [outbox.name, ...(dlqMoves && dlq !== undefined ? [dlq.name] : [])];
  const spellings = moved.flatMap((name) => [name, `${at.schema}.${name}`]);
  const literals = spellings.map(sqlLiteral).join(', ');
  const bare = moved.map((name) => `WHEN ${sqlLiteral(`${at.schema}.${name}`)} THEN ${sqlLiteral(name)}`).join(' ');
  return {
    tables: [
      `CREATE SCHEMA IF NOT EXISTS ${to};`,
      `ALTER TABLE ${from(outbox.name)} SET SCHEMA ${to};`,
      `ALTER TABLE IF EXISTS ${from(paused.name)} SET SCHEMA ${to};`,
      `ALTER TABLE IF EXISTS ${from(stats.name)} SET SCHEMA ${to};`,
    ],
    dlq: dlqMoves && dlq !== undefined ? [`ALTER TABLE ${from(dlq.name)} SET SCHEMA ${to};`] : [],
    // The history goes along, or migrate() would try to create the moved tables again.
    history: [
      `${buildSchemaSql(names).createMigrationsTable.replace(/\s+/g, ' ')};`,
      `INSERT INTO ${names.migrationsTable} (table_name, version, name, applied_at) SELECT CASE table_name ${bare} ELSE table_name END, version, name, applied_at FROM ${from(MIGRATIONS_TABLE)} WHERE table_name IN (${literals}) ON CONFLICT DO NOTHING;`,
      `DELETE FROM ${from(MIGRATIONS_TABLE)} WHERE table_name IN (${literals});`,
    ],
  };
}

/** The fix's text around the move statements (`move` is where they go). */
function fixText(names: SchemaNames, at: Spelling, move: string): string {
  const keep = `${at.schema}.${names.outbox.name}`;
  return (
    `keep the tables where they are with table: '${keep}' (txoutbox.yaml: table: ${keep}; CLI: --table ${keep}), which processes still on 0.1 share, wake-ups included; ` +
    `or, once no process of 0.1 runs, move them in one transaction: ${move}`
  );
}

/** TableInOtherSchemaError for a twin found in `at`, its DLQ's twin in `dlqSchema` (if any). */
function legacyError(names: SchemaNames, at: Spelling, dlqSchema: string | undefined, fix: string) {
  return new TableInOtherSchemaError({
    option: 'table',
    table: names.outbox.display,
    found: `${at.schema}.${names.outbox.name}`,
    foundDlq: dlqSchema === undefined ? undefined : `${dlqSchema}.${names.dlq?.name ?? ''}`,
    fix,
  });
}

/** Throws TableInOtherSchemaError when the outbox table is missing from `txoutbox` but 0.1's is found. */
export async function assertNotInLegacyLocation(db: Queryable, names: SchemaNames): Promise<void> {
  const found = await findOutboxTwin(db, names);
  if (found === undefined || found.table_exists) return;
  const dlq = dlqSearched(names);
  const foundDlq = dlq === undefined ? undefined : (await db.query<Twin>(FIND_TWIN_SQL, twinParams(dlq, DLQ_COLUMNS))).rows[0];
  const at = { schema: found.schema, quoted: quoteIdent(found.schema) };
  const move = moveStatements(names, at, foundDlq?.schema === found.schema);
  const statements = [...move.tables, ...move.dlq, ...(found.has_history ? move.history : [])];
  throw legacyError(names, at, foundDlq?.schema, fixText(names, at, statements.join(' ')));
}

/**
 * Placeholders for the DO block: control characters no name or message contains, turned into
 * format() positions once the text around them has its `%` doubled.
 */
const SCHEMA = '\u0001';
const QUOTED = '\u0002';
const DLQ_SCHEMA = '\u0003';
const FIX = '\u0004';
const SECTIONS = '\u0005';

/** A format() template: `%` doubled, then the placeholders as positional arguments. */
function formatTemplate(text: string, positions: Record<string, number>): string {
  let template = text.replaceAll('%', '%%');
  for (const [placeholder, position] of Object.entries(positions)) template = template.replaceAll(placeholder, `%${position}$s`);
  return template;
}

/** A string literal, as quote_literal() writes one (E'' when a backslash needs escaping). */
function sqlLiteral(text: string): string {
  const quoted = text.replaceAll("'", "''");
  return text.includes('\\') ? `E'${quoted.replaceAll('\\', '\\\\')}'` : `'${quoted}'`;
}

/** `ARRAY['a', 'b']::text[]` */
function textArray(values: readonly string[]): string {
  return `ARRAY[${values.map(sqlLiteral).join(', ')}]::text[]`;
}

/**
 * The printed script's first statement when the outbox table is in the `txoutbox` schema: a DO
 * block that runs FIND_TWIN_SQL (the same text migrate() runs) and, when the table is missing but
 * 0.1's twin exists, raises an exception whose message is TableInOtherSchemaError's — so a script
 * pasted into a Prisma/Drizzle/Knex migration refuses itself instead of creating the empty second
 * outbox. Every value in it is a literal written here from validated names; the schema found at
 * run time enters the message only through format() and, quoted, through the same `"…"` doubling
 * quoteIdent() does. Undefined for other schemas (not checked, as by migrate()).
 */
export function legacyGuardBlock(names: SchemaNames): string | undefined {
  if (names.outbox.schema !== DEFAULT_SCHEMA) return undefined;
  const dlq = dlqSearched(names);
  const at = { schema: SCHEMA, quoted: QUOTED };
  // Statements: %1$s the schema, %2$s quoted; the fix then takes the DLQ and history sections.
  const statement = { [SCHEMA]: 1, [QUOTED]: 2 };
  const section = (statements: readonly string[]): string =>
    statements.length === 0 ? '' : formatTemplate(` ${statements.join(' ')}`, statement);
  const plain = moveStatements(names, at, false);
  const withDlq = moveStatements(names, at, true);
  const fix = formatTemplate(fixText(names, at, `${plain.tables.join(' ')}${SECTIONS}`), { ...statement, [SECTIONS]: 3 });
  // Messages: %1$s the schema, %2$s the DLQ's schema, %3$s the fix.
  const message = (dlqSchema: string | undefined): string =>
    formatTemplate(legacyError(names, at, dlqSchema, FIX).message, { [SCHEMA]: 1, [DLQ_SCHEMA]: 2, [FIX]: 3 });
  const search = (into: string, table: TableName, columns: readonly string[]): string =>
    `EXECUTE search INTO ${into} USING ${sqlLiteral(table.sql)}::text, ${sqlLiteral(quoteIdent(table.name))}::text, ${sqlLiteral(table.schema ?? '')}::text, ${textArray(columns)}, ${sqlLiteral(MIGRATIONS_TABLE)}::text;`;
  const sections = (dlqMoves: boolean): string => {
    const move = dlqMoves ? withDlq : plain;
    return `${sqlLiteral(section(move.dlq))} || CASE WHEN has_history THEN ${sqlLiteral(section(move.history))} ELSE '' END`;
  };
  return [
    `-- Refuses to run beside txoutbox 0.1's tables (architecture/schema.md, "Upgrading from 0.1"): creating`,
    `-- ${names.outbox.display} there would leave a second, empty outbox while 0.1's keeps the rows.`,
    'DO $txoutbox$',
    'DECLARE',
    `  search constant text := ${sqlLiteral(FIND_TWIN_SQL)};`,
    '  found_schema text;',
    '  has_history boolean;',
    '  table_exists boolean;',
    '  dlq_schema text;',
    '  dlq_has_history boolean; -- read to match the search columns, not used',
    '  dlq_exists boolean; -- the same',
    '  quoted text;',
    'BEGIN',
    `  ${search('found_schema, has_history, table_exists', names.outbox, OUTBOX_COLUMNS)}`,
    '  IF found_schema IS NULL OR table_exists THEN',
    '    RETURN;',
    '  END IF;',
    ...(dlq === undefined ? [] : [`  ${search('dlq_schema, dlq_has_history, dlq_exists', dlq, DLQ_COLUMNS)}`]),
    `  quoted := '"' || replace(found_schema, '"', '""') || '"';`,
    '  RAISE EXCEPTION USING MESSAGE = format(',
    `    CASE WHEN dlq_schema IS NULL THEN ${sqlLiteral(message(undefined))}`,
    `      ELSE ${sqlLiteral(message(DLQ_SCHEMA))} END,`,
    '    found_schema, dlq_schema,',
    `    format(${sqlLiteral(fix)}, found_schema, quoted,`,
    `      format(CASE WHEN dlq_schema = found_schema THEN ${sections(true)}`,
    `        ELSE ${sections(false)} END, found_schema, quoted)));`,
    'END',
    '$txoutbox$;',
  ].join('\n');
}
