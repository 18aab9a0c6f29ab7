import type pg from 'pg';

import { TableInOtherSchemaError } from '../errors.js';
import { quoteIdent } from './identifiers.js';
import { DEFAULT_SCHEMA, MIGRATIONS_TABLE, type SchemaNames } from './schema-names.js';
import { buildSchemaSql } from './sql.js';

/**
 * The upgrade from 0.1, whose default table was an unqualified `outbox` (so `public.outbox`), to
 * the `txoutbox` schema of its own (issue 14, item 2). A process of the new version must not
 * migrate a second, empty `txoutbox.outbox` while the rows — and the publishes of processes still
 * on 0.1 — sit in `public.outbox`: nothing would ever consume them. So `migrate()` and
 * `validateSchema()` look where 0.1 would have looked, and refuse with both names and the fix.
 *
 * Only for tables in the `txoutbox` schema, the one the default moved to: an explicit
 * `billing.outbox` beside an older `public.outbox` is two outboxes on purpose.
 */

/** Columns only a txoutbox outbox table has together (a table merely named "outbox" is not ours). */
const OUTBOX_COLUMNS = ['queue', 'payload', 'acquired_token', 'acquired_at', 'next_attempt_at', 'deliveries_count'];
/** The same for the DLQ. */
const DLQ_COLUMNS = ['original_id', 'queue', 'payload', 'failure_reason', 'failed_at'];

/**
 * $1 = the table's quoted, qualified name: one row when it exists (it then needs no check).
 * $2 = the bare name, quoted, resolved through search_path as 0.1 resolved it; $3 = the schema
 * the options name; $4 = the columns that make it ours. One row when such a table is elsewhere,
 * with whether that schema keeps a bookkeeping table ($5, its name) to carry the history over.
 */
const FIND_ELSEWHERE_SQL = `SELECT n.nspname AS schema,
  to_regclass(quote_ident(n.nspname) || '.' || quote_ident($5::text)) IS NOT NULL AS has_history
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE to_regclass($1::text) IS NULL
  AND c.oid = to_regclass($2::text) AND c.relkind IN ('r', 'p') AND n.nspname <> $3::text
  AND (SELECT count(*) FROM pg_attribute a
       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY($4::text[]))
    = cardinality($4::text[])`;

interface Found {
  readonly schema: string;
  readonly has_history: boolean;
}

export type Queryable = Pick<pg.ClientBase, 'query'>;

async function findElsewhere(db: Queryable, table: { sql: string; name: string; schema: string }, columns: string[]) {
  const { rows } = await db.query<Found>(FIND_ELSEWHERE_SQL, [
    table.sql,
    quoteIdent(table.name),
    table.schema,
    columns,
    MIGRATIONS_TABLE,
  ]);
  return rows[0];
}

/** Throws TableInOtherSchemaError when the outbox table is missing from `txoutbox` but 0.1's is found. */
export async function assertNotInLegacyLocation(db: Queryable, names: SchemaNames): Promise<void> {
  const { outbox, dlq } = names;
  if (outbox.schema !== DEFAULT_SCHEMA) return;
  const found = await findElsewhere(db, { ...outbox, schema: outbox.schema }, OUTBOX_COLUMNS);
  if (found === undefined) return;
  const foundDlq =
    dlq?.schema === DEFAULT_SCHEMA ? await findElsewhere(db, { ...dlq, schema: dlq.schema }, DLQ_COLUMNS) : undefined;
  const from = (name: string): string => `${quoteIdent(found.schema)}.${quoteIdent(name)}`;
  const moved = [outbox.name, ...(foundDlq?.schema === found.schema && dlq !== undefined ? [dlq.name] : [])];
  const literals = moved.map((name) => `'${name}'`).join(', ');
  const move = [
    `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(DEFAULT_SCHEMA)};`,
    ...moved.map((name) => `ALTER TABLE ${from(name)} SET SCHEMA ${quoteIdent(DEFAULT_SCHEMA)};`),
    // The history goes along, or migrate() would try to create the moved tables again.
    ...(found.has_history
      ? [
          `${buildSchemaSql(names).createMigrationsTable.replace(/\s+/g, ' ')};`,
          `INSERT INTO ${names.migrationsTable} SELECT * FROM ${from(MIGRATIONS_TABLE)} WHERE table_name IN (${literals}) ON CONFLICT DO NOTHING;`,
          `DELETE FROM ${from(MIGRATIONS_TABLE)} WHERE table_name IN (${literals});`,
        ]
      : []),
  ];
  const keep = `${found.schema}.${outbox.name}`;
  throw new TableInOtherSchemaError({
    option: 'table',
    table: outbox.display,
    found: keep,
    foundDlq: foundDlq === undefined ? undefined : `${foundDlq.schema}.${dlq?.name ?? ''}`,
    fix:
      `keep the tables where they are with table: '${keep}' (txoutbox.yaml: table: ${keep}; CLI: --table ${keep}), which processes still on 0.1 share, wake-ups included; ` +
      `or, once no process of 0.1 runs, move them in one transaction: ${move.join(' ')}`,
  });
}
