import { createHash } from 'node:crypto';

import type { TableName } from '../schema/identifiers.js';
import type { Logger } from '../util/logger.js';
import { statement } from '../util/statement.js';
import type { StatementRunner } from '../util/statement-runner.js';

/** The database's OID and the table's: `relation` of SourceRow. */
const DATABASE_AND_TABLE =
  "(SELECT oid FROM pg_database WHERE datname = current_database())::text || '/' || $1::regclass::oid::text AS relation";

/**
 * Which outbox table of which database of which cluster a row comes from: the cluster's system
 * identifier (random at initdb, shared by its streaming replicas, so a failover keeps it), the
 * database's OID (databases made from one template share their tables' OIDs) and the table's OID.
 * Part of every relayed row's messageId, which brokers and receivers deduplicate on: a row id
 * alone is `1, 2, 3…` in every database, and JetStream took a second service's row 1 for a resend
 * of the first's, answered `duplicate`, and the row was deleted unsent.
 */
const SOURCE_SQL = statement(
  'relay_source',
  `SELECT (SELECT system_identifier FROM pg_control_system())::text AS cluster, ${DATABASE_AND_TABLE}`,
);

/** Without pg_control_system() (a managed service may not grant it): the database's name stands in for the cluster. */
const FALLBACK_SQL = statement('relay_source_fallback', `SELECT current_database()::text AS cluster, ${DATABASE_AND_TABLE}`);

/**
 * PostgreSQL's "permission denied", "undefined function" and "feature not supported" (a
 * PostgreSQL-compatible service without pg_control_system): the fallback's cases. Any other error
 * (the database away) fails the row, which is retried.
 */
const FALLBACK_CODES = new Set(['42501', '42883', '0A000']);

interface SourceRow {
  readonly cluster: string;
  readonly relation: string;
}

/** 12 hex digits (48 bits) of the source: short enough for every broker's id field, wide enough that two sources do not meet. */
function digest(row: SourceRow): string {
  return createHash('sha256').update(`${row.cluster}/${row.relation}`).digest('hex').slice(0, 12);
}

/**
 * The relay's source id, read once, on the first row relayed. A failed read is not kept: the row
 * fails (and is retried), and the next one reads again. Stable across restarts, failovers and
 * upgrades in place; it changes when the table is restored into another cluster, and rows in flight
 * then may be delivered once more (at-least-once, as ever).
 */
export function sourceIdReader(db: StatementRunner, table: TableName, logger: Logger): () => Promise<string> {
  let read: Promise<string> | undefined;
  const readOnce = async (): Promise<string> => {
    try {
      return digest((await db.run<SourceRow>(SOURCE_SQL, [table.sql])).rows[0] as SourceRow);
    } catch (error) {
      const code = (error as { code?: unknown } | null)?.code;
      if (typeof code !== 'string' || !FALLBACK_CODES.has(code)) throw error;
      logger.warn(
        { table: table.display, code },
        "the relay's message ids name the database instead of its cluster (pg_control_system() is not available to this role): two databases of one name in two clusters, relaying into one deduplicating broker, could meet. GRANT EXECUTE ON FUNCTION pg_control_system() TO <role> to rule it out",
      );
      return digest((await db.run<SourceRow>(FALLBACK_SQL, [table.sql])).rows[0] as SourceRow);
    }
  };
  return () => {
    read ??= readOnce().catch((error: unknown) => {
      read = undefined;
      throw error;
    });
    return read;
  };
}
