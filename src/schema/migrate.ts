import type pg from 'pg';

import { MigrationFailedError, MigrationLockTimeoutError, UnsupportedPostgresError } from '../errors.js';
import { backoffMs, delay } from '../util/backoff.js';
import type { TableName } from './identifiers.js';
import { assertNotInLegacyLocation, legacyGuardBlock } from './legacy-location.js';
import {
  isLockTimeout,
  LOCK_RETRY_BASE_MS,
  LOCK_RETRY_CAP_MS,
  lockHolders,
  NO_STATEMENT_TIMEOUT_SQL,
  type ResolvedMigrateOptions,
  SET_LOCK_TIMEOUT_SQL,
} from './migration-lock.js';
import { MIGRATIONS, type MigrationTemplate } from './migrations.generated.js';
import { renderMigration } from './render-migration.js';
import { refuseTakenDlqName, type SchemaNames } from './schema-names.js';
import {
  buildSchemaSql,
  MIGRATION_LOCK_NAMESPACE,
  MIN_SERVER_VERSION_NUM,
  MIN_SERVER_VERSION_REASON,
  RESOLVED_SCHEMAS_SQL,
  type SchemaSql,
  SERVER_VERSION_SQL,
  SHARED_OBJECTS_LOCK_KEY,
} from './sql.js';

export interface MigrateResult {
  /** Names of the migrations this call applied, in order (empty when the schema was current). */
  readonly applied: readonly string[];
}

interface Target {
  readonly target: MigrationTemplate['target'];
  readonly relation: TableName;
  /** The name its history is recorded under: the table as configured (`app.outbox`, `outbox`). */
  readonly table: string;
  /**
   * Every name its history may be found under. The bookkeeping table lives in the outbox's schema,
   * so there a table of that schema spelled bare is the same table: 0.1's default `outbox`
   * recorded `outbox`, and kept as `public.outbox` (or moved into `txoutbox` with its history, the
   * upgrade of legacy-location.ts) it must find that history, not create the table again.
   */
  readonly spellings: readonly string[];
  /** An unqualified table's name: its history may also be under `<current_schema()>.<name>` (sql.ts appliedVersions). */
  readonly unqualified: string | null;
}

/** The tables an outbox owns, each with its migration target and the names of its history. */
function targetsOf(names: SchemaNames): Target[] {
  const { outbox, dlq } = names;
  const spellings = (table: TableName): string[] =>
    table.schema !== undefined && table.schema === outbox.schema ? [table.display, table.name] : [table.display];
  const unqualified = (table: TableName): string | null => (table.schema === undefined ? table.name : null);
  const targets: Target[] = [
    {
      target: 'outbox',
      relation: outbox,
      table: outbox.display,
      spellings: spellings(outbox),
      unqualified: unqualified(outbox),
    },
  ];
  if (dlq !== undefined)
    targets.push({
      target: 'dlq',
      relation: dlq,
      table: dlq.display,
      spellings: spellings(dlq),
      unqualified: unqualified(dlq),
    });
  return targets;
}

export async function assertSupportedServer(client: pg.ClientBase): Promise<void> {
  const { rows } = await client.query<{ version_num: number }>(SERVER_VERSION_SQL);
  const versionNum = rows[0]?.version_num ?? 0;
  if (versionNum < MIN_SERVER_VERSION_NUM) {
    throw new UnsupportedPostgresError(versionNum, MIN_SERVER_VERSION_NUM, MIN_SERVER_VERSION_REASON);
  }
}

/**
 * Creates what the outboxes of a database share — the schemas and `txoutbox_migrations` — in a
 * short transaction of its own, under one database-wide advisory lock, and commits it.
 *
 * The per-table lock does not cover these: two services migrating different tables of a fresh
 * database at once both passed `IF NOT EXISTS` (neither saw the other's uncommitted catalog row)
 * and the second failed with `duplicate key value violates unique constraint
 * "pg_type_typname_nsp_index"` (`pg_namespace_nspname_index` for a schema) — issue 13, item 15.
 * Under the shared lock the later transaction starts its statements after the first committed,
 * so `IF NOT EXISTS` sees the objects. Committing at once (rather than holding the lock through
 * every table's migrations) keeps unrelated tables from waiting on each other's DDL.
 */
async function createSharedObjects(client: pg.ClientBase, sql: SchemaSql): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(sql.sharedLock, [MIGRATION_LOCK_NAMESPACE, SHARED_OBJECTS_LOCK_KEY]);
    // Only what is missing (sql.ts schemaMissing): a role without CREATE can migrate nothing-to-do.
    for (const [i, statement] of sql.createSchemas.entries()) {
      const { rows } = await client.query<{ missing: boolean }>(sql.schemaMissing, [sql.schemas[i]]);
      if (rows[0]?.missing === true) await client.query(statement);
    }
    const { rows } = await client.query<{ missing: boolean }>(sql.migrationsTableMissing, [sql.migrationsTable]);
    if (rows[0]?.missing === true) await client.query(sql.createMigrationsTable);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

/**
 * Applies pending migrations for the outbox table (and the DLQ table when enabled).
 *
 * Atomicity: all pending migrations run in one transaction; a failure rolls every one back. The
 * shared objects (the tables' schemas, an empty `txoutbox_migrations`) are created and committed
 * just before, so they stay after a failed migration — harmless, and found by the next attempt.
 * Isolation: creating the shared objects is serialised database-wide (see createSharedObjects);
 * the migrations take `pg_advisory_xact_lock(namespace, hash(schema.table))`, so concurrent
 * migrators of the same table queue up and the later ones find nothing to do, while migrators of
 * different tables run side by side.
 * Live tables: each attempt waits at most `lockTimeoutMs` for a table's lock, then rolls back and
 * tries again after a backoff, `lockAttempts` times in all (migration-lock.ts says why); the last
 * failure is a MigrationLockTimeoutError naming the sessions that held the table.
 * Namespace: history lives in `txoutbox_migrations` in the outbox table's schema (`txoutbox` by
 * default), keyed by table: each schema keeps its own, so two outboxes in two schemas never share
 * one, and dropping a schema drops its history with it.
 * Upgrade: an outbox missing from `txoutbox` while 0.1's sits in `public` is refused before
 * anything is created (TableInOtherSchemaError, legacy-location.ts).
 *
 * Takes a dedicated client, never a pool: BEGIN, the lock and COMMIT must share one connection.
 */
export async function migrate(
  client: pg.ClientBase,
  names: SchemaNames,
  options: ResolvedMigrateOptions,
): Promise<MigrateResult> {
  // Fail fast, before BEGIN, with the reason for the version floor.
  await assertSupportedServer(client);
  // Before anything is created: not even the empty schema may appear (see legacy-location.ts).
  await assertNotInLegacyLocation(client, names);
  await refuseDlqResolvedToTaken(client, names);
  const sql = buildSchemaSql(names);
  await createSharedObjects(client, sql);
  for (let attempt = 1; ; attempt++) {
    try {
      return await applyPending(client, names, sql, options.lockTimeoutMs);
    } catch (error) {
      if (!(error instanceof LockWait)) throw error;
      if (attempt >= options.lockAttempts) {
        throw new MigrationLockTimeoutError({
          migration: error.migration,
          table: error.table.display,
          lockTimeoutMs: options.lockTimeoutMs,
          attempts: attempt,
          holders: await lockHolders(client, error.table.sql),
          cause: error.cause,
        });
      }
      await delay(backoffMs(attempt, LOCK_RETRY_BASE_MS, LOCK_RETRY_CAP_MS));
    }
  }
}

/**
 * The construction check (schema-names.ts refuseTakenDlqName) with the names as the database
 * resolves them: `table: 'outbox'` with `dlqTable: 'public.outbox'` is one table spelled twice.
 */
async function refuseDlqResolvedToTaken(client: pg.ClientBase, names: SchemaNames): Promise<void> {
  const { dlq, outbox, paused, stats } = names;
  if (dlq === undefined || (dlq.schema === undefined) === (outbox.schema === undefined)) return;
  const tables = [outbox, paused, stats, dlq];
  const { rows } = await client.query<{ schema: string | null }>(RESOLVED_SCHEMAS_SQL, [
    tables.map((table) => table.schema ?? null),
    tables.map((table) => table.name),
  ]);
  const full = new Map(tables.map((table, i) => [table, `${rows[i]?.schema ?? ''}.${table.name}`]));
  refuseTakenDlqName(names, (table) => full.get(table) ?? table.display);
}

/** One attempt's lock_timeout ran out (rolled back): which migration waited, on which table. */
class LockWait extends Error {
  readonly migration: string;
  readonly table: TableName;

  constructor(migration: string, table: TableName, cause: unknown) {
    super(`lock timeout in ${migration}`, { cause });
    this.migration = migration;
    this.table = table;
  }
}

/** One attempt: every pending migration in one transaction, or none. */
async function applyPending(
  client: pg.ClientBase,
  names: SchemaNames,
  sql: SchemaSql,
  lockTimeoutMs: number,
): Promise<MigrateResult> {
  const applied: string[] = [];
  await client.query('BEGIN');
  try {
    await client.query(NO_STATEMENT_TIMEOUT_SQL);
    await client.query(sql.lock, [MIGRATION_LOCK_NAMESPACE, names.outbox.schema ?? null, names.outbox.name]);
    // After the advisory lock: waiting for another migrator of this table is not bounded by it.
    await client.query(SET_LOCK_TIMEOUT_SQL, [lockTimeoutMs === 0 ? '0' : `${lockTimeoutMs}ms`]);
    for (const { target, table, relation, spellings, unqualified } of targetsOf(names)) {
      const { rows } = await client.query<{ version: number }>(sql.appliedVersions, [spellings, unqualified]);
      const done = new Set(rows.map((r) => r.version));
      for (const migration of MIGRATIONS) {
        if (migration.target !== target || done.has(migration.version)) continue;
        try {
          await client.query(renderMigration(migration, names));
        } catch (error) {
          if (isLockTimeout(error)) throw new LockWait(migration.name, relation, error);
          throw new MigrationFailedError(`${migration.name} (on ${table})`, error);
        }
        await client.query(sql.recordMigration, [table, migration.version, migration.name]);
        applied.push(migration.name);
      }
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
  return { applied };
}

/**
 * The whole migration as one SQL script, for teams whose migrations run through Prisma, Drizzle,
 * Knex or plain psql. It records itself in `txoutbox_migrations`, so a later `outbox.migrate()`
 * finds nothing to do. It has no BEGIN/COMMIT: the tool running it owns the transaction. For a
 * table in the `txoutbox` schema the whole script starts with a DO block that raises
 * TableInOtherSchemaError's message beside 0.1's tables (legacy-location.ts, legacyGuardBlock).
 */
export interface MigrationScriptOptions {
  /** Only the migrations with a higher version, per table: an upgrade script. @default 0 (all) */
  readonly since?: number;
}

export function migrationScript(names: SchemaNames, options: MigrationScriptOptions = {}): string {
  const since = options.since ?? 0;
  const sql = buildSchemaSql(names);
  const literal = (value: string): string => `'${value.replaceAll("'", "''")}'`;
  const parts: string[] = [
    `-- txoutbox schema for ${names.outbox.display}${names.dlq === undefined ? '' : ` and ${names.dlq.display}`}`,
    since === 0
      ? '-- Generated by `txoutbox migrate --print`. Run it once, inside a transaction.'
      : `-- Generated by \`txoutbox migrate --print --since ${since}\`: the migrations after version ${since}. Run it once, inside a transaction.`,
  ];
  // First, before the schema: beside 0.1's tables the script refuses itself, as migrate() does.
  // An upgrade script (--since) needs no check: its ALTERs fail on a missing table by themselves.
  const guard = since === 0 ? legacyGuardBlock(names) : undefined;
  if (guard !== undefined) parts.push(guard);
  for (const statement of sql.createSchemas) parts.push(`${statement};`);
  parts.push(`${sql.createMigrationsTable};`);
  for (const { target, table } of targetsOf(names)) {
    for (const migration of MIGRATIONS) {
      if (migration.target !== target || migration.version <= since) continue;
      parts.push(`-- ${migration.name}`, renderMigration(migration, names).trim());
      parts.push(
        `INSERT INTO ${names.migrationsTable} (table_name, version, name) VALUES (${literal(table)}, ${migration.version}, ${literal(migration.name)}) ON CONFLICT DO NOTHING;`,
      );
    }
  }
  return `${parts.join('\n')}\n`;
}
