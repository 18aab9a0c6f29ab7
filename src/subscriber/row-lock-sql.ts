import type { SchemaNames } from '../schema/schema-names.js';
import { GENERIC_PLAN_SET_LOCAL, genericPlanSettings } from '../util/generic-plan.js';
import { idleBound, idleBoundMs } from '../util/idle-bound.js';
import { type Statement, statement, textRows } from '../util/statement.js';
import { claimManyCtes, claimManyLazyCte, claimReport, type QueueWalk } from './claim-many-sql.js';
import { CLAIMED_FIELDS, claimedColumns, dlqMoveText, expiredWalk, keyTurn, readyWalk, retryText } from './sql.js';

/**
 * The statements of a `lease: 'row-lock'` subscription (architecture/row-lock-mode.md). They run
 * inside the batch's own transaction: the claim locks rows (FOR UPDATE SKIP LOCKED) without writing
 * them, and the outcome writes need no token fence, because the row lock is the fence: nobody else
 * can claim, end or reschedule a row this transaction holds, and an old token holder's fenced write
 * waits for the lock and then finds the row gone or its token cleared (0 rows: lease_lost).
 * The outcome statements keep the lease statements' parameter lists (OutcomeWriter binds them), so
 * `$2`, the lease token slot, is bound to ROW_LOCK_TOKEN and only type-checked.
 */
export interface RowLockSql {
  /**
   * $1 queue, $2 leaseTtlMs (the expired-lease branch: rows a `token` subscription left behind), $3 limit,
   * $4 and $5 the lowest and highest id of the subscription's other batch still open (bigint, both
   * NULL for none): see OTHER_BATCH.
   */
  readonly claimOne: Statement;
  /** As claimOne with $1 = queues (text[]). */
  readonly claimMany: Statement;
  /**
   * claimOne ($1 one queue) followed by claimMany's report row for that queue, as sql.ts's: what a
   * batch over several queues sends when its plan lists one queue (row-lock-batch.ts #claim): one
   * ordered locking walk where claimMany over one queue runs heads, cutoff, walk and fill. Same
   * rows, same order, same report columns (queue-schedule.ts splitClaimRows reads both alike).
   */
  readonly claimOneReported: Statement;
  /**
   * The acked rows of the batch, one statement per batch, as the text of a simple query: it leaves in
   * one message with the COMMIT (and the next batch's BEGIN), one round trip (row-lock-batch.ts).
   */
  readonly ackBatch: (ids: readonly string[]) => string;
  /**
   * The acked rows of the batch as a prepared statement, $1 their ids (bigint[] as text): the first
   * prelude of the pipelined COMMIT message (row-lock-batch.ts #commit). Planned once per
   * connection; ackBatch's literal list is planned per batch, and that plan estimated `= ANY` over
   * every id (~1–2 µs of server CPU per message, BENCHMARKS.md issue 18 round seven).
   */
  readonly ack: Statement;
  /** sql.ts retry's parameters; also counts this delivery (the claim did not) and clears an expired lease. */
  readonly retry: Statement;
  /** $1 id, $2 token slot. */
  readonly terminalDelete: Statement;
  /** sql.ts dlqMove's parameters; deliveries_count + 1 for this delivery. */
  readonly dlqMove: Statement | undefined;
}

/** The lease token of a row-lock delivery: no token is written; it fills the `$2` slot of the outcome statements. */
export const ROW_LOCK_TOKEN = 'row-lock';

/**
 * Sent with every batch's BEGIN, in the same simple-query message (one round trip, and chained
 * after the previous batch's COMMIT under a backlog: row-lock-batch.ts): the generic-plan settings
 * (util/generic-plan.ts), so every rl_* statement is planned once per connection, as index scans.
 * Planned per execution (force_custom_plan), the row-lock claim cost 0.17–0.30 ms of planning per
 * batch (two branches, the paused test, keyTurn), as much as its execution. Only row-lock batches
 * run the rl_* statements, so each of their executions (and replans) is under these settings.
 * SET LOCAL: other statements on the connection (token-mode claims, acks) keep their plans as
 * configured.
 */
export const ROW_LOCK_SETTINGS = GENERIC_PLAN_SET_LOCAL;

/**
 * A batch's BEGIN, its settings, and its idle bound (util/idle-bound.ts: a batch cut off half-open
 * would otherwise keep its rows locked for hours). A healthy batch is never idle that long: it is
 * bounded by leaseTtlMs from its claim.
 */
export function rowLockBegin(leaseTtlMs: number): string {
  return `BEGIN; ${ROW_LOCK_SETTINGS}; ${idleBound(leaseTtlMs)}`;
}

/**
 * rowLockBegin's settings as one statement that can be prepared (set_config(…, true) is SET LOCAL):
 * a prelude after BEGIN in the pipelined messages (row-lock-batch.ts), where each statement is its
 * own Parse, Bind and Execute.
 */
export function rowLockSettings(leaseTtlMs: number): Statement {
  return statement('rl_settings', genericPlanSettings(['idle_in_transaction_session_timeout', String(idleBoundMs(leaseTtlMs))]));
}

/**
 * The claim leaves out the id range of the subscription's other batch still open ($4..$5, or
 * nothing when $4 is NULL). Those rows are locked by this process: SKIP LOCKED would skip them,
 * but only after fetching each and trying its lock, once per row of that batch, on every claim
 * made while it runs (with chained batches, every claim). The test runs first, as a filter, so
 * no lock is tried. A row in the range that the other batch does not hold (a key waiting, a row
 * locked elsewhere) waits for a later claim, at most one batch.
 */
const OTHER_BATCH = `($4::bigint IS NULL OR o.id < $4::bigint OR o.id > $5::bigint)`;

/** `$2` is bound and typed but does not filter: the row lock is the fence (see RowLockSql). */
const TOKEN_SLOT = `$2::text IS NOT NULL`;

/**
 * What the handler sees: the row as stored, with this delivery counted (deliveries_count + 1), as
 * a lease claim's UPDATE would have returned it. Nothing is written: a crash mid-batch leaves the
 * count as it was (architecture/row-lock-mode.md, "When not to use it").
 */
const RETURNED = `${claimedColumns('deliveries_count + 1')}, pg_current_xact_id() AS xid`;

/**
 * Where a claimed row's last column, `xid`, is (after `id` and CLAIMED_FIELDS): the batch's
 * transaction id, which the claim's row locks assigned (a claim that locks nothing assigns none, so
 * an idle poll stays a read-only transaction). The batch keeps it for a COMMIT whose answer never
 * arrives: pg_xact_status then tells whether it landed (transaction-outcome.ts). Per row,
 * one call that reads the backend's own state; the report rows of a reported claim have NULL here.
 */
export const XID_FIELD = 1 + CLAIMED_FIELDS.split(',').length;

/**
 * One claim: the ready branch of the lease claim (same index walk, same paused-queue and per-key
 * tests) and its expired-lease branch, both FOR UPDATE SKIP LOCKED, no UPDATE. A keyed row stays
 * its key's oldest while this transaction holds it (it is deleted only at COMMIT), so every
 * younger row of its key fails keyTurn in any other claim: per-key order holds.
 * The expired branch takes rows whose token lease ran out (a `token` subscription's process died,
 * e.g. during a rolling deploy): nothing else would ever claim them here. A live lease is not taken.
 * The branches are lazy under the outer LIMIT, as in sql.ts: the expired one runs only when the
 * ready one came up short.
 * `reported`: followed by the queue's report row (claimReport, $1 being that one queue), as claimMany's.
 */
function claimOneText(table: string, paused: string, reported = false): string {
  const notPaused = `NOT EXISTS (SELECT 1 FROM ${paused} WHERE queue = $1::text)`;
  return `WITH ready AS (
  SELECT o.id, ${prefixed('o')} FROM ${table} AS o
  WHERE o.acquired_token IS NULL AND o.queue = $1::text AND o.next_attempt_at <= now() AND ${notPaused}
    AND ${OTHER_BATCH} AND ${keyTurn(table, 'o')}
  ORDER BY o.next_attempt_at, o.id
  LIMIT $3
  FOR UPDATE SKIP LOCKED
), expired AS (
  SELECT o.id, ${prefixed('o')} FROM ${table} AS o
  WHERE o.acquired_token IS NOT NULL AND o.queue = $1::text
    AND o.acquired_at < now() - $2::double precision * interval '1 millisecond' AND ${notPaused} AND ${OTHER_BATCH}
  ORDER BY o.acquired_at
  LIMIT $3
  FOR UPDATE SKIP LOCKED
)
${
  reported
    ? `, ${reportedSelect(readyWalk(table, paused, ''), true)}`
    : `SELECT id::text AS id, ${RETURNED} FROM ready
UNION ALL
SELECT id::text AS id, ${RETURNED} FROM expired
LIMIT $3`
}`;
}

/**
 * Several queues ($1 text[]): the candidate pick of sql.ts's claimMany (claim-many-sql.ts: about $3
 * rows locked whatever the queue count), each walk returning the row itself. After the claimed rows,
 * one report row per listed queue (claim-many-sql.ts claimReport), as the lease claim's: the
 * subscription's queue schedule (queue-schedule.ts) learns from them which queues to list next, so
 * $1 holds only the unknown and active ones (issue 18). The report's probe steps over the rows this
 * claim locked (`picked`) but not over those the other open batch holds ($4..$5): their queue is
 * reported due now and listed again, which costs a probe, never a stranded row. No UPDATE: `picked`
 * and `claimed` are the locked rows themselves (the expired walk's acquired_at stands where the
 * ready walk's next_attempt_at is: the returned columns read neither).
 */
function claimManyText(table: string, paused: string): string {
  const fields = prefixed('o');
  const ready = readyWalk(table, paused, fields);
  const expired = expiredWalk(table, paused, fields, false);
  // The walks' `filter` runs in their locking walks only (claim-many-sql.ts), where OTHER_BATCH belongs.
  return `WITH ${claimManyCtes({ ...ready, filter: `${OTHER_BATCH} AND ${ready.filter}` })}, ${claimManyLazyCte({ ...expired, filter: OTHER_BATCH })}, ${reportedSelect(readyWalk(table, paused, ''), false)}`;
}

/**
 * The tail of a reported claim, after its `ready` and `expired` CTEs (a comma-separated CTE list's
 * rest, no leading comma): `picked` and `claimed` (the locked rows themselves: nothing is
 * written), the report (claim-many-sql.ts claimReport over `walk`; `single`: $1 is one queue), and
 * the final SELECT: the claimed rows, then the report rows.
 */
function reportedSelect(walk: QueueWalk, single: boolean): string {
  const report = claimReport(walk, single);
  return `picked AS (
  SELECT * FROM ready UNION ALL SELECT * FROM expired LIMIT $3
), claimed AS (
  SELECT * FROM picked
), ${report.cte}
${report.select(`id::text AS id, ${RETURNED}`, '')}`;
}

/** A comma-separated list of integers: what idList may splice into SQL text. */
const ID_LIST = /^-?\d+(?:,-?\d+)*$/;

/**
 * The ids as an array literal's elements. They are the claim's own `id::text` of a bigint, so digits;
 * checked anyway (one match over the joined list, not one per id: this runs per batch on the hot
 * path), because they are spliced into SQL text.
 */
function idList(ids: readonly string[]): string {
  const list = ids.join(',');
  if (!ID_LIST.test(list)) throw new Error(`row-lock ack: not a list of row ids: ${JSON.stringify(list.slice(0, 200))}`);
  return list;
}

/** `ids` as the text of a bigint[] (the ack statement's $1). */
export function idArray(ids: readonly string[]): string {
  return `{${idList(ids)}}`;
}

/** CLAIMED_FIELDS qualified by `alias`, for the branch bodies. */
function prefixed(alias: string): string {
  return CLAIMED_FIELDS.split(',')
    .map((field) => `${alias}.${field.trim()}`)
    .join(', ');
}

export function buildRowLockSql(names: SchemaNames): RowLockSql {
  const t = names.outbox.sql;
  const paused = names.paused.sql;
  return {
    claimOne: textRows(statement('rl_claim', claimOneText(t, paused))),
    claimMany: textRows(statement('rl_claim_many', claimManyText(t, paused))),
    claimOneReported: textRows(statement('rl_claim_reported', claimOneText(t, paused, true))),
    ackBatch: (ids) => `DELETE FROM ${t} WHERE id = ANY('{${idList(ids)}}'::bigint[])`,
    ack: statement('rl_ack', `DELETE FROM ${t} WHERE id = ANY($1::bigint[])`),
    retry: statement('rl_retry', retryText(t, TOKEN_SLOT, true)),
    terminalDelete: statement('rl_terminal', `DELETE FROM ${t} WHERE id = $1::bigint AND ${TOKEN_SLOT}`),
    dlqMove: names.dlq === undefined ? undefined : statement('rl_dlq', dlqMoveText(t, names.dlq.sql, TOKEN_SLOT, true)),
  };
}
