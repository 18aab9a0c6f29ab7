import type { DriftFinding } from '../errors.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../util/logger.js';
import { expectedSchema } from './expected-schema.js';
import { quoteIdent } from './identifiers.js';
import { findOutboxTwin, type Queryable } from './legacy-location.js';
import type { SchemaNames } from './schema-names.js';

/**
 * `txoutbox.outbox` exists, and so does 0.1's twin (`public.outbox`, reached by the bare name
 * through search_path) with rows in it: the state a `migrate --print` script pasted into an ORM
 * migration left before it checked for 0.1 (legacy-location.ts). 0.2 consumers read only the new
 * table, so those rows — and whatever 0.1 producers still insert — are never consumed. Reported by
 * validateSchema() as a `stranded_rows` finding and logged once when an Outbox starts consuming.
 * architecture/schema.md, "Upgrading from 0.1".
 */

/**
 * What the move leaves out: `id` (the new table's identity numbers the rows again) and the lease
 * (no 0.1 consumer runs once they move, so every row is ready).
 */
const NOT_MOVED = new Set(['id', 'acquired_token', 'acquired_at']);

/** $1 = a table's quoted name: its columns. */
const COLUMNS_SQL = `SELECT attname AS name FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`;

/**
 * The columns the move copies: every column of the outbox the twin has too, but NOT_MOVED. Read
 * from the twin: one this version migrated holds `ordering_key`, `activate_at` and the last
 * exception, which a fixed list of 0.1's columns dropped (per-key order lost without a word).
 */
async function movedColumns(db: Queryable, names: SchemaNames, twin: string): Promise<string> {
  const { rows } = await db.query<{ name: string }>(COLUMNS_SQL, [twin]);
  const present = new Set(rows.map((row) => row.name));
  const outbox = expectedSchema(names).find((table) => table.placeholder === 'outbox');
  return (outbox?.columns ?? [])
    .map((column) => column.name)
    .filter((name) => present.has(name) && !NOT_MOVED.has(name))
    .join(', ');
}

/** One row, true when the table holds any row: an index-free probe that stops at the first row. */
const hasRowsSql = (quotedTable: string): string => `SELECT EXISTS (SELECT 1 FROM ${quotedTable}) AS has_rows`;

/** The finding when 0.1's twin of an existing txoutbox-schema outbox holds rows; undefined otherwise. */
export async function findStrandedRows(db: Queryable, names: SchemaNames): Promise<DriftFinding | undefined> {
  const twin = await findOutboxTwin(db, names);
  if (twin === undefined || !twin.table_exists) return undefined;
  const { outbox } = names;
  const from = `${quoteIdent(twin.schema)}.${quoteIdent(outbox.name)}`;
  const { rows } = await db.query<{ has_rows: boolean }>(hasRowsSql(from));
  if (rows[0]?.has_rows !== true) return undefined;
  const found = `${twin.schema}.${outbox.name}`;
  const moved = await movedColumns(db, names, from);
  return {
    table: found,
    kind: 'stranded_rows',
    message: `${found}, the table of txoutbox 0.1 (whose default was an unqualified "outbox"), holds rows that nothing consumes: this Outbox reads only ${outbox.display}, and processes still on 0.1 keep publishing into ${found}.`,
    fix:
      `consume them with a second Outbox on table: '${found}' (txoutbox.yaml: a consumer with table: ${found}; migrate() it first, which applies what 0.1 lacked) until no 0.1 process publishes and it is empty; ` +
      `or, once no process of 0.1 runs, move them and drop the table (a forgotten 0.1 producer then fails instead of stranding more): ` +
      `BEGIN; INSERT INTO ${outbox.sql} (${moved}) SELECT ${moved} FROM ${from}; DROP TABLE ${from}; COMMIT;`,
  };
}

/**
 * Once, when an Outbox starts its first subscription: logs the stranded rows at error level with
 * the fix. Two catalog reads and an EXISTS probe, never on the claim path; never rejects.
 */
export async function reportStrandedRows(db: Queryable, names: SchemaNames, logger: Logger): Promise<void> {
  try {
    const finding = await findStrandedRows(db, names);
    if (finding !== undefined) logger.error({ table: finding.table }, `${finding.message} Fix: ${finding.fix}`);
  } catch (error) {
    logger.warn({ table: names.outbox.display }, `could not check for rows left in txoutbox 0.1's table: ${errorMessage(error)}`);
  }
}
