import { dueColumns, keyedDueAt, orderingKeyLockId, wakeOrAnnounce } from '../producer/sql.js';
import type { TableName } from '../schema/identifiers.js';
import type { SchemaNames } from '../schema/schema-names.js';
import { type Statement, statement } from '../util/statement.js';

/**
 * The DLQ API's statements, built once per Outbox from its validated names (architecture/operations.md).
 * Every statement shares one filter, so list, redrive and purge select exactly the same rows:
 * $1 queue, $2 failure_reason, $3 failed before (ISO text), $4 failed after (ISO text), $5 ids
 * (bigint[]), $6 highest id (the DLQ's max(id) when a filter redrive or purge started); NULL
 * means "any". They run only on the Outbox's own node-postgres pool.
 */
export interface DlqSql {
  /**
   * Filter, then $7 cursor failed_at (UTC text), $8 cursor id, $9 limit, $10 the page's byte budget
   * (queues/peek-page-bytes.ts). Newest first, walking <dlq>_time_idx (or the queue's index) under
   * the limit. Of those rows, the page keeps them while their running total of stored bytes (payload,
   * last_exception, headers' text) fits the budget, and always the first: a row past it is never
   * sent, its payload never read (octet_length reads the size from the value's header). Each row
   * carries `row_bytes` and `candidate_count` (the rows under the limit): fewer rows than that is a
   * page the budget cut. ORDER BY names the table's columns: a bare `id` would sort by the text
   * alias ("9" before "10").
   */
  readonly list: Statement;
  /**
   * list's filter, cursor, limit and budget, then $11 preview bytes: the payload's first $11 + 1
   * bytes and its size instead of the payload, so a page of fifty 1 MB dead letters sends kilobytes,
   * not 50 MB, and nothing parses a body; a row counts its head, not its payload, in the budget.
   * substring of a TOASTed value detoasts only a slice where the storage allows (uncompressed or pglz).
   */
  readonly listPreviews: Statement;
  /** $1 id. */
  readonly get: Statement;
  /** $1 id, $2 preview bytes: one row as listPreviews reads it (its body's head and size, not its body). */
  readonly getPreview: Statement;
  /**
   * Filter, then $7 batch size, $8 delay in ms, $9 channel, $10 the pass's cursor (the last id an
   * earlier batch picked; NULL at a pass's start), $11 and $12 the keys held so far in the pass
   * (queues and keys, in pairs; at most HELD_KEYS_CAP of them, dead-letters.ts). ONE statement per
   * batch: the delete from the DLQ and the insert into the outbox commit together or not at all, so
   * a row is never in both tables nor in neither.
   * One result row per queue (one row with a NULL queue when nothing moved), each with
   * `last_picked`, the cursor for the next batch (NULL: the pass is over), and `held_queues` /
   * `held_keys`, the keys this batch held (see redrivable); due queues are notified in the
   * statement, the others told when their rows are due (a redrive's delayMs).
   */
  readonly redrive: Statement;
  /** Filter, then $7 batch size. */
  readonly purge: Statement;
  /** Filter: how many rows it still selects (after a redrive left rows whose key was busy). */
  readonly count: Statement;
  /**
   * $1 age in ms, $2 failed before (ISO text or NULL): the earlier of now() - age and $2, as ISO
   * text at microseconds — the olderThanMs line by the clock that stamped failed_at, read once.
   */
  readonly cutoff: Statement;
  /**
   * No parameter: the DLQ's highest id as text, NULL when empty (one primary-key probe). Read once
   * when a filter redrive or purge starts and bound every batch by it: a redriven row that dies
   * again comes back with a higher id the same filter selects, and must not be picked again.
   */
  readonly maxId: Statement;
}

/** The header a redriven row carries: the DLQ row id it came from. */
export const REDRIVEN_FROM_HEADER = 'x-txoutbox-redriven-from-dlq';
/** The failure reason the row had in the DLQ. */
export const REDRIVEN_REASON_HEADER = 'x-txoutbox-redriven-reason';
/** The row's id in the outbox before it died (its original_id). */
export const REDRIVEN_ORIGINAL_ID_HEADER = 'x-txoutbox-redriven-original-id';

/**
 * failedBefore and failedAfter are Dates (milliseconds) and failed_at holds microseconds, so the
 * bounds compare at the millisecond, as failedAt reads a row (truncated): strict at the precision a
 * caller can write, and a row is outside both bounds of its own failedAt. Written so the index still
 * serves them (date_trunc(failed_at) would not): at a whole millisecond B, date_trunc < B is
 * failed_at < B, and date_trunc > A is failed_at >= A + 1 ms. The olderThanMs line ($3 from
 * dlq_cutoff, microseconds) is compared as it is.
 */
const FILTER = `($1::text IS NULL OR queue = $1::text)
  AND ($2::text IS NULL OR failure_reason = $2::text)
  AND ($3::text IS NULL OR failed_at < $3::text::timestamptz)
  AND ($4::text IS NULL OR failed_at >= $4::text::timestamptz + interval '1 millisecond')
  AND ($5::bigint[] IS NULL OR id = ANY($5::bigint[]))
  AND ($6::bigint IS NULL OR id <= $6::bigint)`;

/**
 * failed_at at full (microsecond) precision in UTC, independent of the session's DateStyle: the
 * cursor must compare equal to the stored value, which a JavaScript Date (milliseconds) cannot.
 */
const CURSOR_TIME = `to_char(failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS cursor_failed_at`;

const FIELDS = `id::text AS id, original_id::text AS original_id, queue, headers, created_at, first_attempt_at,
  last_attempt_at, attempts_count, deliveries_count, timer_id, failure_reason, last_exception, last_exception_type, failed_at,
  ordering_key`;

const COLUMNS = `${FIELDS}, payload`;

/** One byte past the preview: it tells whether the preview's last character was cut (dead-letter-row.ts). */
const previewColumns = (bytes: number) =>
  `${FIELDS}, substring(payload from 1 for $${bytes}::int + 1) AS payload_head, octet_length(payload) AS payload_bytes`;
const PREVIEW_COLUMNS = previewColumns(11);

/** What a row costs a page: what its columns send, the payload or (previews) the head of it. */
const otherBytes = `coalesce(octet_length(last_exception), 0) + octet_length(headers::text)`;
const ROW_BYTES = `octet_length(payload)::bigint + ${otherBytes}`;
const PREVIEW_ROW_BYTES = `least(octet_length(payload), $11::int + 1)::bigint + ${otherBytes}`;

/** When a redriven row is due: $8 ms from now (a redrive's delayMs). */
const REDRIVE_AT = `now() + $8::double precision * interval '1 millisecond'`;

/** Oldest ids first within a batch, skipping rows another redrive or purge holds (it moves them). */
const pick = (dlq: TableName) => `SELECT id FROM ${dlq.sql} WHERE ${FILTER} ORDER BY id LIMIT $7::int FOR UPDATE SKIP LOCKED`;

/**
 * A redrive's batch: the pick's rows (a CTE: at most $7 after the pass's cursor $10, locked), and
 * of those the ones that may move (`free`). A key's dead letters go back in id order, so a keyed
 * row moves only when its key is not held:
 * - by an earlier batch of the same pass, where a row of the key stayed ($11 queues and $12 keys,
 *   in pairs, what the earlier batches returned as `held`);
 * - by a row SKIP LOCKED passed over in this batch's id range (`skipped`: another redrive or a purge
 *   holds it, and may yet leave it behind): rows the filter selects there that the pick did not take.
 *   A chunk of ids ($5) is picked whole (at most $7 ids), so every id of it the pick did not take
 *   was passed over, even above the last one picked or when none was: a later chunk of the pass
 *   must not move its key's later rows;
 * - by a transaction: the key's publish lock (producer/sql.ts) is TRIED once per key, never waited
 *   for. Waiting deadlocked: one batch took the keys of many rows in no set order and held them to
 *   its commit, while an application transaction holding one of them published under another.
 *   Tried on the picked rows' keys only (in the pick's WHERE it ran before the LIMIT, on every row
 *   the filter matched), and once per key, so a lock freed mid-statement cannot let a key's later
 *   row go without its earlier one.
 * A key's picked rows all move or all stay; `held` returns the keys whose rows stayed or were
 * skipped, and the rows of those keys stay for the rest of the pass (a later pass starts afresh).
 */
const redrivable = (dlq: TableName) => `picked AS (
  SELECT id, queue, ordering_key FROM ${dlq.sql} WHERE ${FILTER} AND ($10::bigint IS NULL OR id > $10::bigint)
  ORDER BY id LIMIT $7::int FOR UPDATE SKIP LOCKED
), skipped AS (
  SELECT DISTINCT queue, ordering_key FROM ${dlq.sql} d
  WHERE ${FILTER} AND ordering_key IS NOT NULL AND ($10::bigint IS NULL OR id > $10::bigint)
    AND ($5::bigint[] IS NOT NULL OR id < (SELECT max(id) FROM picked))
    AND NOT EXISTS (SELECT 1 FROM picked p WHERE p.id = d.id)
), candidates AS (
  SELECT id, queue, ordering_key FROM picked p WHERE ordering_key IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM skipped s WHERE s.queue = p.queue AND s.ordering_key = p.ordering_key)
    AND NOT EXISTS (SELECT 1 FROM unnest($11::text[], $12::text[]) AS h(queue, ordering_key)
      WHERE h.queue = p.queue AND h.ordering_key = p.ordering_key)
), free_keys AS (
  SELECT queue, ordering_key FROM (SELECT DISTINCT queue, ordering_key FROM candidates) k
  WHERE pg_try_advisory_xact_lock(${orderingKeyLockId('queue', 'ordering_key')})
), free AS (
  SELECT id FROM picked WHERE ordering_key IS NULL
  UNION ALL
  SELECT id FROM candidates c WHERE EXISTS (
    SELECT 1 FROM free_keys f WHERE f.queue = c.queue AND f.ordering_key = c.ordering_key)
), held AS (
  SELECT queue, ordering_key FROM picked p
  WHERE ordering_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM free f WHERE f.id = p.id)
  UNION
  SELECT queue, ordering_key FROM skipped
)`;

/**
 * list and listPreviews: the same rows in the same order, so their cursors are interchangeable.
 * `candidates` is the page as it was without a budget (the index walk under the limit, each row's
 * payload still a TOAST pointer); `counted` adds the running total in page order; only rows that
 * fit it, or the first, have their columns read and sent. Inlined (one reference each), so the
 * window reads the index order: no sort.
 */
const page = (dlq: TableName, columns: string, rowBytes: string) => `WITH candidates AS (
  SELECT *, ${rowBytes} AS row_bytes FROM ${dlq.sql}
  WHERE ${FILTER}
    AND ($7::text IS NULL OR (failed_at, id) < (($7::text::timestamp AT TIME ZONE 'UTC'), $8::bigint))
  ORDER BY ${dlq.sql}.failed_at DESC, ${dlq.sql}.id DESC LIMIT $9::int
), counted AS (
  SELECT candidates.*, sum(row_bytes) OVER newest AS running_bytes, row_number() OVER newest AS place,
    count(*) OVER () AS candidate_count
  FROM candidates WINDOW newest AS (ORDER BY failed_at DESC, id DESC ROWS UNBOUNDED PRECEDING)
)
SELECT ${columns}, ${CURSOR_TIME}, row_bytes::float8 AS row_bytes, candidate_count::int AS candidate_count FROM counted
WHERE running_bytes <= $10::bigint OR place = 1
ORDER BY counted.failed_at DESC, counted.id DESC`;

export function buildDlqSql(names: SchemaNames & { readonly dlq: TableName }): DlqSql {
  const d = names.dlq.sql;
  return {
    list: statement('dlq_list', page(names.dlq, COLUMNS, ROW_BYTES)),
    listPreviews: statement('dlq_list_previews', page(names.dlq, PREVIEW_COLUMNS, PREVIEW_ROW_BYTES)),
    get: statement('dlq_get', `SELECT ${COLUMNS} FROM ${d} WHERE id = $1::bigint`),
    getPreview: statement('dlq_get_preview', `SELECT ${previewColumns(2)} FROM ${d} WHERE id = $1::bigint`),
    // Counters, lease and last exception start afresh: the row gets a full set of deliveries.
    // A keyed row goes to the end of its key's line, under the key's publish lock like any keyed
    // publish (producer/sql.ts keyLock), tried in `free`: its new id must not overtake a publish
    // still in flight. Like a keyed publish, it is due no earlier than its key's last row
    // (keyedDueAt: a key's times never decrease in id order, which the claim's walk relies on),
    // and its own time is kept in activate_at. The key's rows of one batch all read the same
    // last row (the statement's snapshot): equal times, still in order.
    // timer_id is not carried over: a new timer of the same (queue, timer_id) may exist, and a
    // conflict would lose the row (deleted here, not inserted there); the headers keep the origin.
    redrive: statement(
      'dlq_redrive',
      `WITH ${redrivable(names.dlq)}, moved AS (
  DELETE FROM ${d} WHERE id IN (SELECT id FROM free)
  RETURNING id, original_id, queue, payload, headers, failure_reason, ordering_key
), inserted AS (
  INSERT INTO ${names.outbox.sql} (queue, payload, headers, next_attempt_at, ordering_key, activate_at)
  SELECT queue, payload,
    headers || jsonb_build_object('${REDRIVEN_FROM_HEADER}', id::text, '${REDRIVEN_REASON_HEADER}', failure_reason,
      '${REDRIVEN_ORIGINAL_ID_HEADER}', original_id::text),
    ${keyedDueAt(names.outbox.sql, REDRIVE_AT, 'moved.queue', 'moved.ordering_key')}, ordering_key,
    CASE WHEN ordering_key IS NOT NULL THEN ${REDRIVE_AT} END
  FROM moved
  ORDER BY id
  RETURNING queue, next_attempt_at
), by_queue AS (
  SELECT queue, count(*)::int AS redriven, ${dueColumns('min(next_attempt_at)')},
    ${wakeOrAnnounce('$9::text', 'queue', 'min(next_attempt_at)')} AS woke
  FROM inserted GROUP BY queue
)
SELECT (SELECT max(id) FROM picked)::text AS last_picked,
  (SELECT array_agg(queue ORDER BY queue, ordering_key) FROM held) AS held_queues,
  (SELECT array_agg(ordering_key ORDER BY queue, ordering_key) FROM held) AS held_keys,
  by_queue.*
FROM (VALUES (1)) AS one LEFT JOIN by_queue ON true`,
    ),
    purge: statement('dlq_purge', `DELETE FROM ${d} WHERE id IN (${pick(names.dlq)})`),
    count: statement('dlq_count', `SELECT count(*)::int AS n FROM ${d} WHERE ${FILTER}`),
    // LEAST ignores a NULL argument: without failedBefore, the age alone decides.
    cutoff: statement(
      'dlq_cutoff',
      `SELECT to_char(LEAST(now() - $1::double precision * interval '1 millisecond', $2::text::timestamptz) AT TIME ZONE 'UTC',
  'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS failed_before`,
    ),
    maxId: statement('dlq_max_id', `SELECT max(id)::text AS max_id FROM ${d}`),
  };
}
