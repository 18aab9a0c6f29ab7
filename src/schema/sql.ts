import { quoteIdent } from './identifiers.js';
import type { SchemaNames } from './schema-names.js';

/**
 * SQL of the schema capability, built once per Outbox from validated identifiers.
 * Values are always bound parameters.
 */

/** Lock namespace for pg_advisory_xact_lock(int4, int4): "txob" as a 32-bit integer. */
export const MIGRATION_LOCK_NAMESPACE = 0x74786f62;

/**
 * Key, in that namespace, of the lock every migrate() of the database takes while it creates the
 * objects tables share (schemas, txoutbox_migrations). A table's key is a hashtext(); one equal to
 * 0 only makes that table's migrations wait a moment longer, never wrong.
 */
export const SHARED_OBJECTS_LOCK_KEY = 0;

/** Oldest supported server: 13 (autovacuum insert thresholds, gen_random_uuid() built in). */
export const MIN_SERVER_VERSION_NUM = 130000;
export const MIN_SERVER_VERSION_REASON = 'autovacuum_vacuum_insert_* settings and built-in gen_random_uuid() arrived in 13';

/**
 * The schema search_path finds an unqualified table `name` (a text expression) in, unquoted as the
 * history writes it (nspname, not regnamespace's text, which quotes `"Billing"`); NULL when it does
 * not exist. A table's migration lock and its history are keyed by `<schema>.<name>` through this,
 * so that both spellings of one table (`outbox` found through search_path, `public.outbox`) share them.
 */
function foundSchema(name: string): string {
  return `(SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(quote_ident(${name})))`;
}

/**
 * $1 = schemas (NULL for an unqualified name), $2 = names: the schema each table is (or would be
 * created) in, in order: search_path's for an unqualified name that exists, else current_schema().
 */
export const RESOLVED_SCHEMAS_SQL = `SELECT coalesce(t.schema, ${foundSchema('t.name')}, current_schema()) AS schema
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(schema, name, i)
ORDER BY t.i`;

export const SERVER_VERSION_SQL = `SELECT current_setting('server_version_num')::int AS version_num`;

export interface SchemaSql {
  /**
   * $1 = lock namespace, $2 = schema or NULL (search_path: the schema it finds the table in, else
   * current_schema()), $3 = table. Serialises migrations per table, whichever way it is spelled.
   */
  readonly lock: string;
  /** $1 = lock namespace, $2 = SHARED_OBJECTS_LOCK_KEY. Serialises creating what tables share. */
  readonly sharedLock: string;
  /** Creates the schemas of the schema-qualified tables (outbox and DLQ may live in different ones). */
  readonly createSchemas: readonly string[];
  /** The schemas createSchemas creates, in the same order (to create only the missing ones). */
  readonly schemas: readonly string[];
  /**
   * $1 = a schema name: true when it does not exist. CREATE SCHEMA IF NOT EXISTS and CREATE TABLE
   * IF NOT EXISTS check the CREATE privilege before they look, so a role without it (least
   * privilege, on a schema a DBA migrated) failed even when everything existed: look first.
   */
  readonly schemaMissing: string;
  readonly createMigrationsTable: string;
  /** The migrations table, quoted and qualified. */
  readonly migrationsTable: string;
  /** $1 = the migrations table's quoted name: true when it does not exist yet. */
  readonly migrationsTableMissing: string;
  /**
   * $1 = the table's names in the history (see migrate.ts, Target.spellings); $2 = an unqualified
   * table's name (else NULL), also looked up as `<its schema>.<name>` (where search_path finds it,
   * else current_schema(), where it would be created): the same table spelled qualified
   * (`public.outbox` beside `outbox`) recorded its history under that name.
   */
  readonly appliedVersions: string;
  /** $1 = table display name, $2 = version, $3 = migration name. */
  readonly recordMigration: string;
}

export function buildSchemaSql(names: SchemaNames): SchemaSql {
  const schemas = new Set([names.outbox.schema, names.dlq?.schema].filter((schema) => schema !== undefined));
  return {
    lock: `SELECT pg_advisory_xact_lock($1::int, hashtext(coalesce($2::text, ${foundSchema('$3::text')}, current_schema()) || '.' || $3::text))`,
    sharedLock: `SELECT pg_advisory_xact_lock($1::int, $2::int)`,
    createSchemas: [...schemas].map((schema) => `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`),
    schemas: [...schemas],
    schemaMissing: 'SELECT to_regnamespace(quote_ident($1::text)) IS NULL AS missing',
    migrationsTable: names.migrationsTable,
    migrationsTableMissing: 'SELECT to_regclass($1::text) IS NULL AS missing',
    createMigrationsTable: `CREATE TABLE IF NOT EXISTS ${names.migrationsTable} (
  table_name text NOT NULL,
  version integer NOT NULL,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (table_name, version)
)`,
    appliedVersions: `SELECT DISTINCT version FROM ${names.migrationsTable}
WHERE table_name = ANY($1::text[])
   OR table_name = coalesce(${foundSchema('$2::text')}, current_schema()) || '.' || $2::text
ORDER BY version`,
    recordMigration: `INSERT INTO ${names.migrationsTable} (table_name, version, name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
  };
}
