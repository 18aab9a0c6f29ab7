import { InvalidIdentifierError } from '../errors.js';
import {
  checkDerivedNames,
  type Derivation,
  maxTableNameBytes,
  parseTableName,
  quoteIdent,
  type TableName,
} from './identifiers.js';

/**
 * Every identifier txoutbox puts in SQL for one outbox, derived once from the `table` and
 * `dlqTable` options and validated (63-byte limit included) before any statement is built.
 */
export interface SchemaNames {
  readonly outbox: TableName;
  /** `<table>_paused`: one row per paused queue (pause()/resume(), read by every claim). */
  readonly paused: TableName;
  /** `<table>_stats`: outcomes per queue per minute, summed over every process (status, dashboard). */
  readonly stats: TableName;
  /** undefined when the DLQ is off (`dlqTable: false`). */
  readonly dlq: TableName | undefined;
  /** Unquoted index and constraint names (Postgres creates them in the table's schema). */
  readonly readyIdx: string;
  readonly leaseIdx: string;
  /** The (queue, ordering_key, id) index of keyed rows: the claim's per-key ordering probe. */
  readonly keyIdx: string;
  readonly timerUq: string;
  readonly leaseCk: string;
  readonly dlqFailedIdx: string | undefined;
  readonly dlqTimeIdx: string | undefined;
  readonly dlqReasonCk: string | undefined;
  /** The LISTEN/NOTIFY channel (an identifier, unquoted). */
  readonly channel: string;
  /** Quoted, qualified name of the table that records applied migrations. */
  readonly migrationsTable: string;
}

export const MIGRATIONS_TABLE = 'txoutbox_migrations';

/**
 * The schema txoutbox's tables live in unless `table` names another: a schema of its own, so the
 * migration tools that own the application's schema (`prisma migrate`, `drizzle-kit push`) never
 * see our tables as drift in theirs and offer to drop them (issue 14, item 2). Before 0.2 the
 * default was an unqualified `outbox`, which landed in `public`.
 */
export const DEFAULT_SCHEMA = 'txoutbox';
/** The `table` option's default: `outbox` in txoutbox's own schema. */
export const DEFAULT_TABLE = `${DEFAULT_SCHEMA}.outbox`;

/** Names built from the outbox table's name (`_pkey` is Postgres' own, compared by validateSchema). */
const OUTBOX_SUFFIXES = {
  readyIdx: '_ready_idx',
  leaseIdx: '_lease_idx',
  keyIdx: '_key_idx',
  timerUq: '_timer_uq',
  leaseCk: '_lease_ck',
  pkey: '_pkey',
  paused: '_paused',
  stats: '_stats',
} as const;
/** Names built from the DLQ table's name. */
const DLQ_SUFFIXES = { dlqFailedIdx: '_failed_idx', dlqTimeIdx: '_time_idx', dlqReasonCk: '_reason_ck', pkey: '_pkey' } as const;
/** The default DLQ table is `<table>_dlq`: its own names then derive from `table` as well. */
const DEFAULT_DLQ_SUFFIX = '_dlq';

/**
 * Schemas the NOTIFY channel leaves out: `txoutbox.<table>` for a table in them, as for an
 * unqualified one; `txoutbox.<schema>.<table>` for any other schema, so same-named tables in two
 * schemas do not wake each other's subscribers.
 * - `txoutbox`: the default table's channel stays `txoutbox.outbox`, as short as before, and the
 *   default schema takes no bytes from the table name's limit (`txoutbox.txoutbox.` would cut it
 *   to 45).
 * - `public`: where an unqualified name lands, so `outbox` and `public.outbox` — one table, spelled
 *   the 0.1 way and the way the upgrade error suggests — share one channel; processes of both
 *   versions wake each other during a rolling upgrade. (A 0.1 process that spelled it
 *   `public.outbox` itself used `txoutbox.public.outbox`: its wake-ups and a 0.2 process's miss each
 *   other until both run 0.2, and polling delivers meanwhile.)
 * The price: a `public.<t>` and a `txoutbox.<t>` in one database share a channel too, so each
 * one's publishes also wake the other's subscribers: a claim that finds nothing, never a wrong row.
 */
const SCHEMAS_LEFT_OUT_OF_CHANNEL: ReadonlySet<string> = new Set([DEFAULT_SCHEMA, 'public']);

/** The NOTIFY channel's spelling around the table name. */
function channelDerivation(table: TableName): Derivation {
  return table.schema === undefined || SCHEMAS_LEFT_OUT_OF_CHANNEL.has(table.schema)
    ? { prefix: 'txoutbox.', suffix: '', what: 'NOTIFY channel' }
    : { prefix: `txoutbox.${table.schema}.`, suffix: '', what: 'NOTIFY channel', fix: ', or shorten the schema name' };
}

function suffixed(suffixes: Readonly<Record<string, string>>, before = ''): Derivation[] {
  return Object.values(suffixes).map((suffix) => ({ prefix: '', suffix: `${before}${suffix}`, what: 'name' }));
}

/**
 * Every identifier derived from the `table` option: the outbox's indexes and constraints, the
 * NOTIFY channel and, with the default dlqTable, the DLQ table and its names. The longest of these
 * — `<table>_dlq_failed_idx` with the default DLQ — sets the table name's limit (48 bytes; 53 with
 * a dlqTable of its own or none). architecture/schema.md states these numbers.
 */
export function tableDerivations(outbox: TableName, defaultDlq: boolean): Derivation[] {
  return [
    ...suffixed(OUTBOX_SUFFIXES),
    channelDerivation(outbox),
    ...(defaultDlq ? [...suffixed({ dlq: '' }, DEFAULT_DLQ_SUFFIX), ...suffixed(DLQ_SUFFIXES, DEFAULT_DLQ_SUFFIX)] : []),
  ];
}

/**
 * A DLQ named like the outbox or a table beside it: the migration history is keyed by table name,
 * so the DLQ's migrations were taken for done (the outbox's were recorded under that name),
 * migrate() succeeded, and every terminal outcome then failed its insert: the row redelivered forever.
 *
 * `where` gives each table's full name: its spelling at construction; at migrate() the schema the
 * database resolves an unqualified name to (`outbox` and `public.outbox` are one table there).
 */
export function refuseTakenDlqName(
  names: Pick<SchemaNames, 'outbox' | 'paused' | 'stats' | 'dlq'>,
  where: (table: TableName) => string = (table) => table.display,
): void {
  const { dlq, outbox } = names;
  if (dlq === undefined) return;
  const taken: [TableName, string][] = [
    [outbox, 'the outbox table itself'],
    [names.paused, "the outbox's pause table"],
    [names.stats, "the outbox's stats table"],
  ];
  const dlqIs = where(dlq);
  for (const [table, what] of taken) {
    if (dlqIs !== where(table)) continue;
    const resolved = dlqIs === dlq.display && dlqIs === table.display ? '' : ` ("${table.display}" is ${dlqIs} in this database)`;
    throw new InvalidIdentifierError({
      option: 'dlqTable',
      identifier: dlq.display,
      reason: `it names ${what}${resolved}. Fix: give the DLQ a name of its own (the default is "${outbox.name}${DEFAULT_DLQ_SUFFIX}"), or dlqTable: false`,
    });
  }
}

export function resolveSchemaNames(table: unknown, dlqTable: unknown): SchemaNames {
  const outbox = parseTableName('table', table);
  const defaultDlq = dlqTable === undefined;
  const derivations = tableDerivations(outbox, defaultDlq);
  // The way out through dlqTable, offered only when the default DLQ's names are what is too long.
  const withoutDlq = maxTableNameBytes(tableDerivations(outbox, false));
  checkDerivedNames(
    'table',
    outbox,
    derivations,
    defaultDlq && withoutDlq > maxTableNameBytes(derivations)
      ? `, or set dlqTable to a name of at most ${maxTableNameBytes(suffixed(DLQ_SUFFIXES))} bytes (or to false), which lifts the table limit to ${withoutDlq} bytes`
      : '',
  );
  // An unqualified DLQ name lives in the outbox's schema; the default is "<table>_dlq".
  let dlq: TableName | undefined;
  if (dlqTable !== false) {
    const raw = defaultDlq ? `${outbox.name}${DEFAULT_DLQ_SUFFIX}` : dlqTable;
    const qualified =
      typeof raw === 'string' && !raw.includes('.') && outbox.schema !== undefined ? `${outbox.schema}.${raw}` : raw;
    // The default name derives from `table`, already checked above: an error here names dlqTable
    // only when the user set it.
    dlq = parseTableName(defaultDlq ? 'table' : 'dlqTable', qualified);
    if (!defaultDlq) checkDerivedNames('dlqTable', dlq, suffixed(DLQ_SUFFIXES), '');
  }
  const migrationsTable =
    outbox.schema === undefined ? quoteIdent(MIGRATIONS_TABLE) : `${quoteIdent(outbox.schema)}.${quoteIdent(MIGRATIONS_TABLE)}`;
  const channel = channelDerivation(outbox);
  // Beside the outbox, in its schema; the derivation check above covered their names' lengths.
  const companion = (suffix: string): TableName =>
    parseTableName('table', outbox.schema === undefined ? `${outbox.name}${suffix}` : `${outbox.schema}.${outbox.name}${suffix}`);
  const paused = companion(OUTBOX_SUFFIXES.paused);
  const stats = companion(OUTBOX_SUFFIXES.stats);
  refuseTakenDlqName({ outbox, paused, stats, dlq });
  return {
    outbox,
    paused,
    stats,
    dlq,
    readyIdx: `${outbox.name}${OUTBOX_SUFFIXES.readyIdx}`,
    leaseIdx: `${outbox.name}${OUTBOX_SUFFIXES.leaseIdx}`,
    keyIdx: `${outbox.name}${OUTBOX_SUFFIXES.keyIdx}`,
    timerUq: `${outbox.name}${OUTBOX_SUFFIXES.timerUq}`,
    leaseCk: `${outbox.name}${OUTBOX_SUFFIXES.leaseCk}`,
    dlqFailedIdx: dlq === undefined ? undefined : `${dlq.name}${DLQ_SUFFIXES.dlqFailedIdx}`,
    dlqTimeIdx: dlq === undefined ? undefined : `${dlq.name}${DLQ_SUFFIXES.dlqTimeIdx}`,
    dlqReasonCk: dlq === undefined ? undefined : `${dlq.name}${DLQ_SUFFIXES.dlqReasonCk}`,
    channel: `${channel.prefix}${outbox.name}`,
    migrationsTable,
  };
}
