import type { TableName } from './identifiers.js';
import { MIGRATIONS, type MigrationTemplate } from './migrations.generated.js';
import { renderMigration } from './render-migration.js';
import type { SchemaNames } from './schema-names.js';

/**
 * The catalog shape txoutbox expects, read from the migration templates themselves (the same SQL
 * `migrate()` runs and `migrate --print` prints), so the validator cannot drift from the DDL: a
 * column, index or CHECK added by a migration is expected as soon as the migration exists. Names
 * come from the same placeholders, resolved through `renderMigration` and `SchemaNames`.
 *
 * The reader is strict: a migration statement it does not understand throws, so whoever appends a
 * migration of a new shape (ALTER TABLE …) teaches it here, and the "fresh schema validates clean"
 * test (test/integration/validate-schema.test.ts) proves the two agree.
 */

export interface ExpectedColumn {
  readonly name: string;
  /** As written in the migration (`timestamptz`); validateSchema asks Postgres for the canonical form. */
  readonly type: string;
  readonly notNull: boolean;
  /** The column's definition as in the migration, for `ADD COLUMN` fixes. */
  readonly definition: string;
  /**
   * What fills the column when an INSERT leaves it out: `identity` (GENERATED … AS IDENTITY), the
   * DEFAULT's expression, or undefined when the migration gives none. txoutbox's INSERTs leave out
   * every column that has one (`id`, `created_at`, the counts, `failed_at` …).
   */
  readonly filledBy: { readonly identity: true } | { readonly identity: false; readonly expression: string } | undefined;
  /** The migration's comment above the column, if any: why it is shaped so. */
  readonly why: string | undefined;
}

export interface ExpectedIndex {
  /** Unquoted name the migration gives it (indexes are matched by columns, not by name). */
  readonly name: string;
  readonly columns: readonly string[];
  readonly unique: boolean;
  /** The partial-index predicate as written in the migration, or undefined for a full index. */
  readonly predicate: string | undefined;
  readonly primaryKey: boolean;
  /** A statement that creates it on a live table. */
  readonly createSql: string;
  readonly why: string | undefined;
}

export interface ExpectedCheck {
  /** Unquoted name the migration gives it (CHECKs are matched by expression, not by name). */
  readonly name: string;
  /** The expression inside `CHECK (…)`, as written in the migration. */
  readonly expression: string;
  readonly why: string | undefined;
}

/** The placeholder a table goes by in the migrations: `CREATE TABLE {{paused}}`. */
export type TablePlaceholder = 'outbox' | 'paused' | 'stats' | 'dlq';

export interface ExpectedTable {
  /** The migration folder that creates it (the outbox's companions are outbox migrations). */
  readonly target: MigrationTemplate['target'];
  readonly placeholder: TablePlaceholder;
  readonly table: TableName;
  readonly columns: readonly ExpectedColumn[];
  readonly indexes: readonly ExpectedIndex[];
  readonly checks: readonly ExpectedCheck[];
}

const CREATE_TABLE = /^CREATE TABLE \{\{(\w+)\}\} \($/;
const CREATE_INDEX = /^CREATE (UNIQUE )?INDEX (?:IF NOT EXISTS )?(\{\{\w+\}\}) ON \{\{(\w+)\}\} \(([^)]*)\)(?: WHERE (.+))?;$/;
const ADD_COLUMN = /^ALTER TABLE \{\{(\w+)\}\} ADD COLUMN (.+);$/;
const TABLE_CHECK = /^CONSTRAINT (\{\{\w+\}\}) CHECK \((.*)\),?$/;
const TABLE_PRIMARY_KEY = /^PRIMARY KEY \(([^)]*)\),?$/;
const COLUMN =
  /^([a-z_][a-z0-9_]*) (.+?)(?= NOT NULL| NULL| DEFAULT| PRIMARY KEY| GENERATED| REFERENCES| UNIQUE| CHECK| COLLATE|,?$)(.*?),?$/;

/** Every table this outbox owns (the DLQ only when it is on), as the migrations define it. */
export function expectedSchema(names: SchemaNames): ExpectedTable[] {
  const tables: ExpectedTable[] = [
    expectedTable('outbox', 'outbox', names.outbox, names),
    expectedTable('outbox', 'paused', names.paused, names),
    expectedTable('outbox', 'stats', names.stats, names),
  ];
  if (names.dlq !== undefined) tables.push(expectedTable('dlq', 'dlq', names.dlq, names));
  return tables;
}

/**
 * The statements of `target`'s migrations that shape `placeholder`'s table; those of the other
 * tables the same migrations create are read past (each is read when its own table is).
 */
function expectedTable(
  target: MigrationTemplate['target'],
  placeholder: TablePlaceholder,
  table: TableName,
  names: SchemaNames,
): ExpectedTable {
  const columns: ExpectedColumn[] = [];
  const indexes: ExpectedIndex[] = [];
  const checks: ExpectedCheck[] = [];
  for (const migration of MIGRATIONS) {
    if (migration.target !== target) continue;
    // Renders a fragment of this migration with the outbox's quoted identifiers.
    const render = (fragment: string): string => renderMigration({ ...migration, sql: fragment }, names);
    const unquoted = (placeholder: string): string => render(placeholder).replace(/^"|"$/g, '');
    let comment: string[] = [];
    let inTable = false;
    let inOtherTable = false;
    for (const raw of migration.sql.split('\n')) {
      const line = raw.trim();
      if (line.startsWith('--')) {
        comment.push(line.replace(/^--\s*/, ''));
        continue;
      }
      const why = comment.length > 0 ? comment.join(' ') : undefined;
      comment = [];
      if (line === '') continue;
      if (inOtherTable) {
        inOtherTable = line !== ');';
        continue;
      }
      if (inTable) {
        if (line === ');') {
          inTable = false;
          continue;
        }
        const check = TABLE_CHECK.exec(line);
        if (check !== null) {
          checks.push({ name: unquoted(check[1] ?? ''), expression: check[2] ?? '', why });
          continue;
        }
        const key = TABLE_PRIMARY_KEY.exec(line);
        if (key !== null) {
          indexes.push(
            primaryKeyIndex(
              table,
              (key[1] ?? '').split(',').map((c) => c.trim()),
            ),
          );
          continue;
        }
        const name = readColumn(line, why, migration, columns);
        if (name !== undefined) indexes.push(primaryKeyIndex(table, [name]));
        continue;
      }
      const added = ADD_COLUMN.exec(line);
      if (added !== null && added[1] !== placeholder) continue;
      if (added !== null) {
        // A primary key cannot be added this way: the table has one.
        if (readColumn(added[2] ?? '', why, migration, columns) !== undefined) throw unreadable(migration, line);
        continue;
      }
      const create = CREATE_TABLE.exec(line);
      if (create !== null) {
        if (create[1] === placeholder) inTable = true;
        else inOtherTable = true;
        continue;
      }
      const index = CREATE_INDEX.exec(line);
      if (index !== null && index[3] !== placeholder) continue;
      if (index !== null) {
        const [, unique, placeholder = '', , columnList = '', predicate] = index;
        indexes.push({
          name: unquoted(placeholder),
          columns: columnList.split(',').map((c) => c.trim()),
          unique: unique !== undefined,
          predicate,
          primaryKey: false,
          // CONCURRENTLY: a live queue table must keep taking writes while the index builds.
          createSql: render(line).replace(/^CREATE (UNIQUE )?INDEX (IF NOT EXISTS )?/, 'CREATE $1INDEX CONCURRENTLY $2'),
          why,
        });
        continue;
      }
      throw unreadable(migration, line);
    }
  }
  return { target, placeholder, table, columns, indexes, checks };
}

/** A primary key as validateSchema compares it (by columns; Postgres names it `<table>_pkey`). */
function primaryKeyIndex(table: TableName, columns: readonly string[]): ExpectedIndex {
  return {
    name: `${table.name}_pkey`,
    columns,
    unique: true,
    predicate: undefined,
    primaryKey: true,
    createSql: `ALTER TABLE ${table.sql} ADD PRIMARY KEY (${columns.join(', ')});`,
    why:
      columns.length === 1 && columns[0] === 'id'
        ? 'The primary key: every fenced write finds its row by id.'
        : `The primary key: one row per (${columns.join(', ')}).`,
  };
}

/**
 * Reads one column definition (a CREATE TABLE line, or what follows ADD COLUMN) into `columns`;
 * returns its name when it is the primary key.
 */
function readColumn(
  definition: string,
  why: string | undefined,
  migration: MigrationTemplate,
  columns: ExpectedColumn[],
): string | undefined {
  const column = COLUMN.exec(definition);
  if (column === null) throw unreadable(migration, definition);
  const [, name = '', type = '', rest = ''] = column;
  const primaryKey = /\bPRIMARY KEY\b/.test(rest);
  const defaultExpression = /\bDEFAULT (.+?)(?= NOT NULL| NULL| PRIMARY KEY| REFERENCES| UNIQUE| CHECK| COLLATE|,?$)/.exec(
    rest,
  )?.[1];
  columns.push({
    name,
    type: type.trim(),
    notNull: primaryKey || /\bNOT NULL\b/.test(rest),
    definition: definition.replace(/,$/, ''),
    filledBy: /\bGENERATED (ALWAYS|BY DEFAULT) AS IDENTITY\b/.test(rest)
      ? { identity: true }
      : defaultExpression === undefined
        ? undefined
        : { identity: false, expression: defaultExpression },
    why,
  });
  return primaryKey ? name : undefined;
}

function unreadable(migration: MigrationTemplate, line: string): Error {
  return new Error(
    `src/schema/expected-schema.ts cannot read this line of migration ${migration.name}: ${JSON.stringify(line)}. ` +
      'Teach it the new statement shape so validateSchema() keeps matching the DDL.',
  );
}
