import { channelName, derivedName, parseTableName, quoteIdent, type TableName } from './identifiers.js';

/**
 * Every identifier txoutbox puts in SQL for one outbox, derived once from the `table` and
 * `dlqTable` options and validated (63-byte limit included) before any statement is built.
 */
export interface SchemaNames {
  readonly outbox: TableName;
  /** undefined when the DLQ is off (`dlqTable: false`). */
  readonly dlq: TableName | undefined;
  /** Unquoted index and constraint names (Postgres creates them in the table's schema). */
  readonly readyIdx: string;
  readonly leaseIdx: string;
  readonly timerUq: string;
  readonly leaseCk: string;
  readonly dlqFailedIdx: string | undefined;
  readonly dlqReasonCk: string | undefined;
  /** The LISTEN/NOTIFY channel (an identifier, unquoted). */
  readonly channel: string;
  /** Quoted, qualified name of the table that records applied migrations. */
  readonly migrationsTable: string;
}

export const MIGRATIONS_TABLE = 'txoutbox_migrations';

export function resolveSchemaNames(table: unknown, dlqTable: unknown): SchemaNames {
  const outbox = parseTableName('table', table);
  // An unqualified DLQ name lives in the outbox's schema; the default is "<table>_dlq".
  let dlq: TableName | undefined;
  if (dlqTable !== false) {
    const raw = dlqTable === undefined ? `${outbox.name}_dlq` : dlqTable;
    const qualified =
      typeof raw === 'string' && !raw.includes('.') && outbox.schema !== undefined ? `${outbox.schema}.${raw}` : raw;
    dlq = parseTableName('dlqTable', qualified);
  }
  const migrationsTable =
    outbox.schema === undefined ? quoteIdent(MIGRATIONS_TABLE) : `${quoteIdent(outbox.schema)}.${quoteIdent(MIGRATIONS_TABLE)}`;
  return {
    outbox,
    dlq,
    readyIdx: derivedName('table', outbox, '_ready_idx'),
    leaseIdx: derivedName('table', outbox, '_lease_idx'),
    timerUq: derivedName('table', outbox, '_timer_uq'),
    leaseCk: derivedName('table', outbox, '_lease_ck'),
    dlqFailedIdx: dlq === undefined ? undefined : derivedName('dlqTable', dlq, '_failed_idx'),
    dlqReasonCk: dlq === undefined ? undefined : derivedName('dlqTable', dlq, '_reason_ck'),
    channel: channelName('table', outbox),
    migrationsTable,
  };
}
