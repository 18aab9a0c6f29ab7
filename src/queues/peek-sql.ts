import { PORTABLE_ROW_COLUMNS, PORTABLE_ROW_FIELDS } from '../producer/sql.js';
import type { SchemaNames } from '../schema/schema-names.js';
import { type Statement, statement } from '../util/statement.js';

/**
 * outbox.peek()'s statements, one per state, built once per Outbox from its validated names
 * (architecture/operations.md). Plain SELECTs: no FOR UPDATE, no write, so a peek never leases,
 * never locks a row and never bumps deliveries_count. Each walks the index its state has, in
 * order, under a keyset cursor (never OFFSET). The cursor timestamp is UTC text at microseconds
 * (`cursor_at`): a JavaScript Date would lose the microseconds and repeat or skip a row.
 * Columns as PORTABLE_ROW_COLUMNS, decoded by toOutboxRow. ORDER BY names `r.` columns: a bare
 * name would sort by the output alias (text id, epoch-ms double).
 *
 * Every statement ends with the page's byte budget (peek-page-bytes.ts): after the limit, the
 * budget left and whether the page has no row yet (then the first row comes whatever its size).
 * Rows are kept while their running total of stored bytes (payload or its head, headers' text)
 * fits; a row past it is never sent. `candidate_count` (the rows under the limit) comes on every
 * result row, and on a row of NULLs when none fits, so the walk tells a state the budget cut from
 * an empty one even then (and does not end the walk, skipping that state's rows).
 */
export interface PeekSql {
  /**
   * $1 queue, $2 leaseTtlMs, $3 cursor next_attempt_at (UTC text) or NULL, $4 cursor id, $5 limit,
   * $6 bytes left, $7 first row always (boolean). What a claim would take now: unleased and due
   * (<t>_ready_idx), or leased with the lease expired (<t>_lease_idx). Oldest first: (next_attempt_at, id).
   */
  readonly ready: Statement;
  /**
   * $1 queue, $2 cursor next_attempt_at or NULL, $3 cursor id, $4 limit, $5 bytes left, $6 first row
   * always. Unleased, not yet due (<t>_ready_idx).
   */
  readonly scheduled: Statement;
  /**
   * $1 queue, $2 leaseTtlMs, $3 cursor acquired_at or NULL, $4 cursor id, $5 limit, $6 bytes left,
   * $7 first row always. Lease held and not expired (<t>_lease_idx).
   */
  readonly leased: Statement;
  /**
   * peekPreviews(): the same rows, order and cursors per state, one more parameter after the budget
   * (the preview's bytes), and instead of the payload its first bytes + 1 (base64, as
   * PORTABLE_ROW_COLUMNS) and its size: a page of fifty 5 MB bodies sends kilobytes, refreshed by
   * every open dashboard tab, and no body is parsed; a row counts its head in the budget.
   * octet_length reads the size from the value's header; substring of a TOASTed value detoasts only
   * a slice where the storage allows.
   */
  readonly previews: { readonly ready: Statement; readonly scheduled: Statement; readonly leased: Statement };
}

const utcText = (column: string) => `to_char(r.${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS cursor_at`;
const after = (column: string, at: number) =>
  `($${at}::text IS NULL OR (${column}, id) > (($${at}::text::timestamp AT TIME ZONE 'UTC'), $${at + 1}::bigint))`;
const expiredBefore = (ttl: number) => `now() - $${ttl}::double precision * interval '1 millisecond'`;
/**
 * What each row returns, and what it costs the budget: the whole row, or (previews) its fields and
 * its payload's head and size. `limit` is the limit's parameter number: the budget's are the two
 * after it, the preview's bytes the third.
 */
interface Columns {
  readonly select: (limit: number) => string;
  readonly rowBytes: (limit: number) => string;
}
const headersBytes = 'octet_length(r.headers::text)';
const WHOLE: Columns = {
  select: () => PORTABLE_ROW_COLUMNS,
  rowBytes: () => `octet_length(r.payload)::bigint + ${headersBytes}`,
};
const PREVIEW: Columns = {
  select: (limit) =>
    `${PORTABLE_ROW_FIELDS}, encode(substring(payload from 1 for $${limit + 3}::int + 1), 'base64') AS payload_head, octet_length(payload) AS payload_bytes`,
  rowBytes: (limit) => `least(octet_length(r.payload), $${limit + 3}::int + 1)::bigint + ${headersBytes}`,
};

/**
 * After the state's CTE `r`: its first `limit` rows in page order (`candidates`, each payload still
 * a TOAST pointer), their running total (`counted`), and the rows that fit the bytes left, or the
 * first when the page has none yet. The LEFT JOIN from the count gives a row of NULLs with
 * `candidate_count` when none fits. (`candidates` is read twice, so it is materialized: at most
 * `limit` rows of pointers; the window sorts those, not the table.)
 */
const output = (columns: Columns, cursorColumn: string, limit: number) => `, candidates AS (
  SELECT r.*, ${columns.rowBytes(limit)} AS row_bytes FROM r ORDER BY r.${cursorColumn}, r.id LIMIT $${limit}::int
), counted AS (
  SELECT candidates.*, sum(row_bytes) OVER oldest AS running_bytes, row_number() OVER oldest AS place
  FROM candidates WINDOW oldest AS (ORDER BY ${cursorColumn}, id ROWS UNBOUNDED PRECEDING)
)
SELECT ${columns.select(limit)}, ${utcText(cursorColumn)}, r.row_bytes::float8 AS row_bytes, total.n AS candidate_count
FROM (SELECT count(*)::int AS n FROM candidates) AS total
LEFT JOIN counted r ON r.running_bytes <= $${limit + 1}::bigint OR (r.place = 1 AND $${limit + 2}::boolean)
ORDER BY r.${cursorColumn}, r.id`;

export function buildPeekSql(names: SchemaNames): PeekSql {
  const whole = statementsOf(names, WHOLE, 'peek');
  return { ...whole, previews: statementsOf(names, PREVIEW, 'peek_preview') };
}

function statementsOf(names: SchemaNames, columns: Columns, kind: string): Omit<PeekSql, 'previews'> {
  const t = names.outbox.sql;
  return {
    ready: statement(
      `${kind}_ready`,
      `WITH unleased AS (
  SELECT * FROM ${t} WHERE acquired_token IS NULL AND queue = $1::text AND next_attempt_at <= now() AND ${after('next_attempt_at', 3)}
  ORDER BY next_attempt_at, id LIMIT $5::int
), expired AS (
  SELECT * FROM ${t} WHERE acquired_token IS NOT NULL AND queue = $1::text AND acquired_at < ${expiredBefore(2)}
    AND ${after('next_attempt_at', 3)}
  ORDER BY next_attempt_at, id LIMIT $5::int
), r AS (SELECT * FROM unleased UNION ALL SELECT * FROM expired)
${output(columns, 'next_attempt_at', 5)}`,
    ),
    scheduled: statement(
      `${kind}_scheduled`,
      `WITH r AS (
  SELECT * FROM ${t} WHERE acquired_token IS NULL AND queue = $1::text AND next_attempt_at > now() AND ${after('next_attempt_at', 2)}
  ORDER BY next_attempt_at, id LIMIT $4::int
)
${output(columns, 'next_attempt_at', 4)}`,
    ),
    leased: statement(
      `${kind}_leased`,
      `WITH r AS (
  SELECT * FROM ${t} WHERE acquired_token IS NOT NULL AND queue = $1::text AND acquired_at >= ${expiredBefore(2)}
    AND ${after('acquired_at', 3)}
  ORDER BY acquired_at, id LIMIT $5::int
)
${output(columns, 'acquired_at', 5)}`,
    ),
  };
}
