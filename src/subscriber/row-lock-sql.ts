import type { SchemaNames } from '../schema/schema-names.js';
import { type Statement, statement, textRows } from '../util/statement.js';
import { claimManyCtes, claimManyLazyCte } from './claim-many-sql.js';
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
  /** $1 queue, $2 leaseTtlMs (the expired-lease branch: rows a `token` subscription left behind), $3 limit. */
  readonly claimOne: Statement;
  /** As claimOne with $1 = queues (text[]). */
  readonly claimMany: Statement;
  /** $1 ids (bigint[]). The acked rows of the batch, one statement per batch. */
  readonly ackBatch: Statement;
  /** sql.ts retry's parameters; also counts this delivery (the claim did not) and clears an expired lease. */
  readonly retry: Statement;
  /** $1 id, $2 token slot. */
  readonly terminalDelete: Statement;
  /** sql.ts dlqMove's parameters; deliveries_count + 1 for this delivery. */
  readonly dlqMove: Statement | undefined;
}

/** The lease token of a row-lock delivery: no token is written; it fills the `$2` slot of the outcome statements. */
export const ROW_LOCK_TOKEN = 'row-lock';

/** `$2` is bound and typed but does not filter: the row lock is the fence (see RowLockSql). */
const TOKEN_SLOT = `$2::text IS NOT NULL`;

/**
 * What the handler sees: the row as stored, with this delivery counted (deliveries_count + 1), as
 * a lease claim's UPDATE would have returned it. Nothing is written: a crash mid-batch leaves the
 * count as it was (architecture/row-lock-mode.md, "When not to use it").
 */
const RETURNED = claimedColumns('deliveries_count + 1');

/**
 * One claim: the ready branch of the lease claim (same index walk, same paused-queue and per-key
 * tests) and its expired-lease branch, both FOR UPDATE SKIP LOCKED, no UPDATE. A keyed row stays
 * its key's oldest while this transaction holds it (it is deleted only at COMMIT), so every
 * younger row of its key fails keyTurn in any other claim: per-key order holds.
 * The expired branch takes rows whose token lease ran out (a `token` subscription's process died,
 * e.g. during a rolling deploy): nothing else would ever claim them here. A live lease is not taken.
 * The branches are lazy under the outer LIMIT, as in sql.ts: the expired one runs only when the
 * ready one came up short.
 */
function claimOneText(table: string, paused: string): string {
  const notPaused = `NOT EXISTS (SELECT 1 FROM ${paused} WHERE queue = $1::text)`;
  return `WITH ready AS (
  SELECT o.id, ${prefixed('o')} FROM ${table} AS o
  WHERE o.acquired_token IS NULL AND o.queue = $1::text AND o.next_attempt_at <= now() AND ${notPaused}
    AND ${keyTurn(table, 'o')}
  ORDER BY o.next_attempt_at, o.id
  LIMIT $3
  FOR UPDATE SKIP LOCKED
), expired AS (
  SELECT o.id, ${prefixed('o')} FROM ${table} AS o
  WHERE o.acquired_token IS NOT NULL AND o.queue = $1::text
    AND o.acquired_at < now() - $2::double precision * interval '1 millisecond' AND ${notPaused}
  ORDER BY o.acquired_at
  LIMIT $3
  FOR UPDATE SKIP LOCKED
)
SELECT id::text AS id, ${RETURNED} FROM ready
UNION ALL
SELECT id::text AS id, ${RETURNED} FROM expired
LIMIT $3`;
}

/**
 * Several queues ($1 text[]): the candidate pick of sql.ts's claimMany (claim-many-sql.ts: about $3
 * rows locked whatever the queue count), each walk returning the row itself.
 */
function claimManyText(table: string, paused: string): string {
  const fields = prefixed('o');
  return `WITH ${claimManyCtes(readyWalk(table, paused, fields))}, ${claimManyLazyCte(expiredWalk(table, paused, fields, false))}
SELECT id::text AS id, ${RETURNED} FROM ready
UNION ALL
SELECT id::text AS id, ${RETURNED} FROM expired
LIMIT $3`;
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
    ackBatch: statement('rl_ack', `DELETE FROM ${t} WHERE id = ANY($1::bigint[])`),
    retry: statement('rl_retry', retryText(t, TOKEN_SLOT, true)),
    terminalDelete: statement('rl_terminal', `DELETE FROM ${t} WHERE id = $1::bigint AND ${TOKEN_SLOT}`),
    dlqMove: names.dlq === undefined ? undefined : statement('rl_dlq', dlqMoveText(t, names.dlq.sql, TOKEN_SLOT, true)),
  };
}
