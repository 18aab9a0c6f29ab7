import type { SchemaNames } from '../schema/schema-names.js';
import { plannedOnce, type Statement, statement, textRows } from '../util/statement.js';
import { claimManyCtes, claimManyLazyCte, type ClaimReport, claimReport, type QueueWalk } from './claim-many-sql.js';
import { nextClaimableText } from './idle-probe.js';

/**
 * Subscriber statements, built once per Outbox. Every write that ends or reschedules a row filters
 * on (id, acquired_token): a holder whose lease expired and was re-claimed matches nothing, and
 * reports `lease_lost` instead of an outcome (DESIGN invariant 2).
 */
export interface SubscriberSql {
  /**
   * $1 queue, $2 leaseTtlMs, $3 limit, $4 token, $5 ids this subscription is still running (bigint[],
   * usually empty): never re-claimed by it through the expired branch. See claimText. Planned once
   * per connection (statement.ts plannedOnce), as the claims below: planned per execution it spent
   * about a fifth of its cost planning (BENCHMARKS.md issue 18 b, round five).
   */
  readonly claimOne: Statement;
  /**
   * As claimOne with $1 = queues (text[]): locks about $3 rows whatever the queue count. See
   * claim-many-sql.ts. After the claimed rows, one report row per listed queue (id NULL; its
   * queue and due milliseconds in the last two columns): read by queue-schedule.ts. Planned once
   * per connection (statement.ts plannedOnce): its planning cost as much as its execution.
   */
  readonly claimMany: Statement;
  /**
   * claimOne ($1 one queue) followed by claimMany's report row for that queue: what a scheduled
   * claim sends when its plan lists a single queue (subscription.ts #claim). Cheaper than claimMany
   * over one queue: one ordered locking walk instead of heads, cutoff, walk and fill. Same rows, same
   * order, same report columns (queue-schedule.ts splitClaimRows reads both alike). Planned once
   * per connection, as claimMany (statement.ts plannedOnce).
   */
  readonly claimOneReported: Statement;
  /**
   * $1 queues (text[]), $2 leaseTtlMs, $3 ids held here (bigint[]), $4 ms since the empty claim
   * before it: when the next delayed row comes due or lease held elsewhere runs out, as (queue,
   * in_ms), or no row. An idle loop's probe before a long sleep (idle-probe.ts), in either lease mode.
   */
  readonly nextClaimable: Statement;
  /**
   * $1 ids (bigint[]), $2 tokens (uuid[]). Returns the (id, token) pairs deleted (the others lost
   * their lease), each with the transaction's id (`xid`, ACK_XID_FIELD). PK lookups. A
   * transactional run's ack, in its own transaction: the id asks the server about a COMMIT whose
   * answer was lost (delivery-transaction.ts).
   */
  readonly ackBatch: Statement;
  /**
   * The acker's DELETE: ackBatch's, returning the other pairs instead: those it did NOT delete
   * (their lease was lost), usually none, each with whether its row is there under another token
   * or none (`not_ours`). A batch of acks then costs one short answer instead of a row per message
   * to send, parse and match (issue 18).
   */
  readonly ackMissed: Statement;
  /**
   * $1 id, $2 token, $3 delayMs, $4 firstAttemptAt, $5 lastAttemptAt, $6 last_exception_type, $7
   * last_exception (NULL keeps the row's: a nack without an error). Clears the lease; next_attempt_at
   * by the DB clock.
   */
  readonly retry: Statement;
  /** $1 id, $2 token. A terminal row without a DLQ. */
  readonly terminalDelete: Statement;
  /**
   * $1 id, $2 token, $3 failure_reason, $4 last_exception (NULL = the row's: the last one a handler
   * reported), $5 firstAttemptAt (used if unset), $6 lastAttemptAt (NULL = keep), $7 attempts to add
   * (1 after a handler run, 0 for max_deliveries), $8 last_exception_type (NULL = the row's).
   * One statement: if the DLQ insert fails, the delete rolls back and the row stays.
   */
  readonly dlqMove: Statement | undefined;
  /** $1 ids, $2 tokens. Extends leases still held; returns their (id, token) pairs. */
  readonly renewLeases: Statement;
  /** $1 ids, $2 tokens. Gives back rows claimed but never started (stop): redelivered at once, not after the TTL. */
  readonly releaseLeases: Statement;
  /**
   * $1 queues (text[]), $2 lease TTL in ms, $3 ids this subscription holds (skipped), $4
   * limit: leases that ran out (a holder that died, or one past its lease), given back unleased,
   * oldest first, returning their ids. They rejoin the ready walk at their due time, in front of a
   * backlog: the claim's expired branch runs only when the ready branch came up short, which a
   * backlog never lets happen, so a crashed process's rows (and their keys) waited for the whole
   * backlog, or for good under a steady one. The count stays: the next claim counts a delivery,
   * as re-claiming the row would have. A stale holder's write is fenced off as before (no token).
   */
  readonly releaseExpired: Statement;
  /**
   * $1 id, $2 token. A transactional delivery's first statement: locks its row while the lease is
   * still its own (no row: the lease was lost before the handler started). See delivery-transaction.ts.
   */
  readonly lockLease: Statement;
  /**
   * $1 ids, $2 their attempts_count as claimed: how many of those rows are still as they were
   * claimed (one row, `unwritten`). A transaction that wrote each and committed leaves none: an ack,
   * a DLQ move or a terminal delete removed the row, a retry raised attempts_count, which nothing
   * lowers. For a write whose answer was lost: an outcome write on the pool (outcome-writer.ts), a
   * COMMIT whose transaction id the server says committed (transaction-outcome.ts: after a failover
   * that id may name another transaction).
   */
  readonly unwritten: Statement;
  /**
   * $1 id, $2 token. Inside a failed transactional run's transaction (repeatable read,
   * serializable: its retry is written through the pool): the lease's time set to the clock's now
   * (`now()` is the transaction's start, as old as the run), so the row cannot be claimed before
   * that write lands (delivery-transaction.ts endWithFreshLease).
   */
  readonly refreshHeldLease: Statement;
}

/**
 * The columns a claim reads of each row (the branch bodies and the UPDATE's RETURNING):
 * the handler's message and the delivery bookkeeping. `last_attempt_at` is not among them: no
 * delivery reads it (the retry and DLQ writes set or keep it in the table).
 */
export const CLAIMED_FIELDS = `queue, payload, headers, created_at, deliveries_count, attempts_count, first_attempt_at, timer_id,
  last_exception_type, ordering_key`;

/**
 * A timestamptz as whole milliseconds since the epoch (text), free of the session's DateStyle and
 * TimeZone: exact on every supported version (PostgreSQL 13's extract() is a double, but
 * microseconds since 1970 fit its 53 bits and the cast rounds them), floored as node-postgres'
 * parser did (before 1970 too). `infinity` cannot be cast to int8 — one such row (written by hand)
 * would fail every claim of its queue — so it comes back as the text `Infinity` (an invalid Date).
 */
const epochMs = (column: string): string =>
  `CASE WHEN isfinite(${column}) THEN floor((extract(epoch FROM ${column}) * 1000000)::int8 / 1000.0) ELSE extract(epoch FROM ${column}) END`;

/**
 * What a claim returns of each row after `id::text AS id`, in this order, read as an array of
 * texts and decoded by claimed-row.ts (keep the two in step). `deliveriesCount` is the expression
 * the handler sees as deliveries_count (a row-lock claim counts this delivery in it).
 * Why text and not node-postgres' own parsers (issue 18, BENCHMARKS.md "Node CPU per drained
 * message"): its timestamptz parser alone cost ~0.7 µs a row; epoch milliseconds become a Date for
 * a fraction of that. The payload comes as `encode(…, 'base64')`, which does not depend on the
 * session's bytea_output either: 4/3 of its bytes on the wire and in the JS string instead of
 * hex's 2×, and Buffer.from decodes it faster. PostgreSQL breaks base64 into lines of 76
 * characters; Node's base64 decoder skips the newlines.
 */
export function claimedColumns(deliveriesCount: string): string {
  return `queue, encode(payload, 'base64') AS payload, headers::text AS headers, ${epochMs('created_at')} AS created_at,
  ${deliveriesCount} AS deliveries_count, attempts_count, ${epochMs('first_attempt_at')} AS first_attempt_at, timer_id,
  last_exception_type, ordering_key`;
}

/**
 * Per-key ordering (publish option orderingKey): a keyed ready row is claimable only when it is
 * the oldest row of its key left in the table. Rows are deleted when they end (ack, DLQ), so
 * "oldest left" is the one whose turn it is; while it is leased, scheduled for a retry or delayed,
 * every later row of its key fails this test and waits, and rows of other keys pass. One probe of
 * <t>_key_idx per keyed candidate; `ordering_key IS NULL` lets unkeyed rows through untouched.
 * The expired branch needs no such test: a leased keyed row was its key's oldest when claimed, and
 * stays so, because keyed publishes are serialized per key (producer/sql.ts keyLock) and a DLQ
 * redrive inserts a new, younger row.
 * Concurrent claims cannot both take a key: its oldest row is row-locked by the first (the second
 * skips it) and every younger row fails the test in either snapshot. The cost is in walking
 * rows that wait: a claim passes over the waiting rows of busy keys that are older than the rows it
 * takes (bench: BENCHMARKS.md, "Per-key ordering").
 */
export const keyTurn = (table: string, row: string) =>
  `(${row}.ordering_key IS NULL OR NOT EXISTS (
      SELECT 1 FROM ${table} AS k WHERE k.queue = ${row}.queue AND k.ordering_key = ${row}.ordering_key AND k.id < ${row}.id))`;

/**
 * The claim commits without waiting for its WAL flush (`synchronous_commit = off` for this
 * statement's own implicit transaction only: `set_config(…, true)`, evaluated once as an InitPlan).
 * A claim's durability buys nothing: if the server crashes before the claim reaches disk, the row
 * comes back unleased, which is what an expired lease does anyway, and every later outcome write
 * (ack, retry, DLQ move) commits synchronously, flushing the claim's WAL before its own. The only
 * trace of a lost claim is a `deliveries_count` one lower than the handler runs it saw. Worth it:
 * half of a drain's commits are claims, and each synchronous commit waits for an fsync.
 */
const ASYNC_COMMIT = `(SELECT set_config('synchronous_commit', 'off', true)) = 'off'`;

/**
 * One claim statement per fetch. Each partial index gets its own branch, each branch walks its
 * index in order with FOR UPDATE SKIP LOCKED under its own LIMIT, and the expired-lease branch
 * only runs when the ready branch came up short (Append is lazy under the outer LIMIT). A single
 * `WHERE ready OR expired` would make the planner BitmapOr both indexes and sort every ready row:
 * O(backlog) per fetch. The UPDATE finds the picked rows through `id = ANY(ARRAY(…))`, a primary-key
 * lookup whatever the table statistics say (a join could be planned as a scan of the whole table).
 *   ready:   <t>_ready_idx (queue, next_attempt_at, id) WHERE acquired_token IS NULL
 *   expired: <t>_lease_idx (queue, acquired_at) WHERE acquired_token IS NOT NULL
 * `branches` defines the CTEs `ready` and `expired`; `claimText` assembles them with the UPDATE.
 * A paused queue (a row in <t>_paused, pause()) is claimed by neither branch: for one queue the
 * check does not depend on the row, so Postgres runs it once per statement (a one-time filter, one
 * primary-key probe); for several it drops the paused queues before their index walks. Every
 * claim in every process reads it, so a pause holds from the next claim on.
 * The rows come back in (next_attempt_at, id) order, the order they run in: UPDATE … RETURNING
 * alone returns them in physical order (issue 13, item 11). Sorting at most $3 rows costs nothing
 * measurable.
 * The expired branch skips $5, the rows this subscription is still running: a handler that outlives
 * its lease is not re-claimed by its own subscription (to wait behind itself, and keep the row from
 * a competitor that could run it now); a competitor may take it, and the slow run's outcome is then
 * fenced off. With no competitor the slow run's outcome still lands under its first token.
 */
function claimText(table: string, branches: string, report?: ClaimReport): string {
  const list = `id::text AS id, ${claimedColumns('deliveries_count')}`;
  const order = 'ORDER BY claimed.next_attempt_at, claimed.id';
  return `WITH ${branches}, picked AS (
  SELECT id FROM ready UNION ALL SELECT id FROM expired LIMIT $3
), claimed AS (
  UPDATE ${table} AS t SET acquired_token = $4::uuid, acquired_at = now(), deliveries_count = t.deliveries_count + 1
  WHERE t.id = ANY(ARRAY(SELECT id FROM picked)) AND ${ASYNC_COMMIT}
  RETURNING id, next_attempt_at, ${CLAIMED_FIELDS}
)${report === undefined ? '' : `, ${report.cte}`}
${report === undefined ? `SELECT ${list} FROM claimed ${order}` : report.select(list, order)}`;
}

/**
 * One queue ($1 text): each branch is an ordered, LIMIT-bounded, locking walk of its index.
 * `reported`: followed by the queue's report row (claimReport), as claimMany's.
 */
function claimOneText(table: string, paused: string, reported = false): string {
  const notPaused = `NOT EXISTS (SELECT 1 FROM ${paused} WHERE queue = $1::text)`;
  return claimText(
    table,
    `ready AS (
  SELECT o.id FROM ${table} AS o
  WHERE o.acquired_token IS NULL AND o.queue = $1::text AND o.next_attempt_at <= now() AND ${notPaused}
    AND ${keyTurn(table, 'o')}
  ORDER BY o.next_attempt_at, o.id
  LIMIT $3
  FOR UPDATE SKIP LOCKED
), expired AS (
  SELECT id FROM ${table}
  WHERE acquired_token IS NOT NULL AND queue = $1::text AND acquired_at < now() - $2::double precision * interval '1 millisecond'
    AND id <> ALL($5::bigint[]) AND ${notPaused}
  ORDER BY acquired_at
  LIMIT $3
  FOR UPDATE SKIP LOCKED
)`,
    reported ? claimReport(readyWalk(table, paused, ''), true) : undefined,
  );
}

/**
 * Several queues ($1 text[]): per branch, claim-many-sql.ts picks the candidates (unlocked head
 * probes, a cutoff, then per queue the single-queue locking walk up to the cutoff), so a claim
 * locks about $3 rows whatever the queue count (issue 18). The expired branch skips $5 as claimOne's.
 * After the claimed rows, one report row per listed queue (claim-many-sql.ts claimReport): what
 * the subscription's queue schedule (queue-schedule.ts) learns which queues to list next from.
 */
function claimManyText(table: string, paused: string): string {
  return claimText(
    table,
    `${claimManyCtes(readyWalk(table, paused, ''))}, ${claimManyLazyCte(expiredWalk(table, paused, '', true))}`,
    claimReport(readyWalk(table, paused, '')),
  );
}

/** The ready branch's per-queue walk (<t>_ready_idx, per-key order), for claimManyCtes. Shared with row-lock-sql.ts. */
export function readyWalk(table: string, paused: string, fields: string): QueueWalk {
  return {
    name: 'ready',
    table,
    paused,
    where: (queue) => `o.acquired_token IS NULL AND o.queue = ${queue}`,
    filter: keyTurn(table, 'o'),
    due: 'o.next_attempt_at <= now()',
    keys: ['next_attempt_at', 'id'],
    fields,
  };
}

/**
 * The expired-lease branch's per-queue walk (<t>_lease_idx). `skipRunning`: leave out $5, the ids
 * this subscription still runs (lease mode; a row-lock claim binds no $5). Shared with row-lock-sql.ts.
 */
export function expiredWalk(table: string, paused: string, fields: string, skipRunning: boolean): QueueWalk {
  return {
    name: 'expired',
    table,
    paused,
    where: (queue) => `o.acquired_token IS NOT NULL AND o.queue = ${queue}${skipRunning ? ' AND o.id <> ALL($5::bigint[])' : ''}`,
    filter: '',
    due: `o.acquired_at < now() - $2::double precision * interval '1 millisecond'`,
    keys: ['acquired_at'],
    fields,
  };
}

/**
 * A keyed row's retry also moves its key's waiting rows (younger, not yet due later) to its own
 * next attempt: they cannot run before it ends, and due now they would sit at the front of the
 * ready index, where every claim of the queue walks past them and probes each one (a stuck key
 * with 10,000 waiting rows made the queue's other rows drain 8× slower: BENCHMARKS.md, "Issue 16:
 * per-key ordering"). Keyed publishes inherit the previous row's time the same way (producer/sql.ts), so a
 * key's times never decrease in id order and its oldest row stays first in the walk. One pass over
 * the key's rows in <t>_key_idx per retry, none for an unkeyed row (the join finds nothing).
 */
const waitingRowsPushed = (t: string) => `pushed AS (
  UPDATE ${t} AS w SET next_attempt_at = r.next_attempt_at FROM retried AS r
  WHERE r.ordering_key IS NOT NULL AND w.queue = r.queue AND w.ordering_key = r.ordering_key AND w.id > r.id
    AND w.acquired_token IS NULL AND w.next_attempt_at < r.next_attempt_at
)`;

/**
 * (id, token) pairs for batched writes. The redundant `t.id = ANY($1)` keeps the plan a
 * primary-key lookup even on a never-analyzed table; the join on both columns keeps fencing
 * per pair.
 */
const PAIRS = `unnest($1::bigint[], $2::uuid[]) AS l(id, token)`;
const PAIRS_MATCH = `t.id = ANY($1::bigint[]) AND t.id = l.id AND t.acquired_token = l.token`;
/** What a batched write returns: the pairs it matched (one row can be held twice, under two tokens). */
const PAIRS_RETURNING = `t.id::text AS id, l.token::text AS token`;
/** Where ackBatch's rows (as texts) have the transaction's id: after PAIRS_RETURNING's two columns. */
export const ACK_XID_FIELD = 2;

/**
 * ackMissed: the pairs are read once (a CTE), the DELETE returns the pairs it matched, and the
 * answer is the pairs it did not, each with whether its row is there under another token or none
 * (`not_ours`). Fenced exactly as ackBatch: a pair deletes only the row its token still holds, so a
 * stale holder's pair is answered as missed and deletes nothing. A missed row there under another
 * token or none was not deleted by an earlier try whose answer was lost (acker.ts). Read in the
 * statement's snapshot, which may still have the row under this token: an earlier try committing
 * while this one began (a slow flush), whose delete this one's then waited for; so "there under
 * this token" says nothing, and counts as not `not_ours`.
 */
function ackMissedText(t: string): string {
  return `WITH l AS (SELECT * FROM ${PAIRS}), deleted AS (
  DELETE FROM ${t} AS t USING l WHERE ${PAIRS_MATCH} RETURNING t.id, l.token
)
SELECT l.id::text AS id, l.token::text AS token,
  EXISTS (SELECT 1 FROM ${t} AS o WHERE o.id = l.id AND o.acquired_token IS DISTINCT FROM l.token) AS not_ours
FROM l
WHERE NOT EXISTS (SELECT 1 FROM deleted AS d WHERE d.id = l.id AND d.token = l.token)`;
}

/** A pair a batched write returned, as `pairKey` names it. */
export interface MatchedPair {
  readonly id: string;
  readonly token: string;
}

/** A pair ackMissed did not delete, and whether its row is there under another token or none. */
export interface MissedPair extends MatchedPair {
  readonly not_ours: boolean;
}

/** One (id, token) pair as a Set key. */
export function pairKey(id: string, token: string): string {
  return `${id} ${token}`;
}

/**
 * The $1, $2 of a batched write, in PostgreSQL's array text form. Built here because the values
 * need no quoting — row ids are digits (`id::text`), tokens are UUIDs from randomUUID — while pg's
 * own array encoder quotes and escapes every element: a measurable cost at one ack DELETE per
 * event-loop turn.
 */
export function pairValues(
  leases: readonly { readonly record: { readonly id: string }; readonly token: string }[],
): [string, string] {
  return [`{${leases.map((l) => l.record.id).join(',')}}`, `{${leases.map((l) => l.token).join(',')}}`];
}

/** The fence of a lease's outcome write ($1 id, $2 token): the row is still this lease's. */
const TOKEN_FENCE = 'acquired_token = $2::uuid';

/**
 * The retry write (see SubscriberSql.retry for its parameters), behind `fence` (a condition on
 * $2). `countDelivery`: this run's delivery is counted here (a row-lock claim writes nothing; a
 * lease claim already counted it). Shared with row-lock-sql.ts.
 */
export function retryText(t: string, fence: string, countDelivery: boolean): string {
  // clock_timestamp(), not now(): inside a row-lock batch (or a transactional handler's transaction)
  // now() is the transaction's start, and a row that failed 1.5 s into its batch with a 1 s delay
  // was written due before the batch even committed: the backoff was lost.
  return `WITH retried AS (
  UPDATE ${t} SET next_attempt_at = clock_timestamp() + $3::double precision * interval '1 millisecond',
    attempts_count = attempts_count + 1,${countDelivery ? '\n    deliveries_count = deliveries_count + 1,' : ''}
    first_attempt_at = COALESCE(first_attempt_at, $4::timestamptz),
    last_attempt_at = $5::timestamptz,
    last_exception_type = COALESCE($6::text, last_exception_type),
    last_exception = COALESCE($7::text, last_exception),
    acquired_token = NULL, acquired_at = NULL
  WHERE id = $1::bigint AND ${fence}
  RETURNING id, queue, ordering_key, next_attempt_at
), ${waitingRowsPushed(t)}
SELECT id FROM retried`;
}

/** The DLQ move (SubscriberSql.dlqMove's parameters) behind `fence`; `countDelivery` as retryText. Shared with row-lock-sql.ts. */
export function dlqMoveText(t: string, dlq: string, fence: string, countDelivery: boolean): string {
  return `WITH moved AS (
  DELETE FROM ${t} WHERE id = $1::bigint AND ${fence}
  RETURNING id, queue, payload, headers, created_at, first_attempt_at, last_attempt_at, attempts_count, deliveries_count, timer_id,
    last_exception, last_exception_type, ordering_key
)
INSERT INTO ${dlq} (original_id, queue, payload, headers, created_at, first_attempt_at, last_attempt_at,
  attempts_count, deliveries_count, timer_id, failure_reason, last_exception, last_exception_type, ordering_key, failed_at)
SELECT id, queue, payload, headers, created_at, COALESCE(first_attempt_at, $5::timestamptz), COALESCE($6::timestamptz, last_attempt_at),
  attempts_count + $7::int, deliveries_count${countDelivery ? ' + 1' : ''}, timer_id, $3::text, COALESCE($4::text, last_exception),
  COALESCE($8::text, last_exception_type), ordering_key, clock_timestamp()
FROM moved
RETURNING original_id`;
}

export function buildSubscriberSql(names: SchemaNames): SubscriberSql {
  const t = names.outbox.sql;
  return {
    claimOne: plannedOnce(textRows(statement('claim', claimOneText(t, names.paused.sql)))),
    claimMany: plannedOnce(textRows(statement('claim_many', claimManyText(t, names.paused.sql)))),
    claimOneReported: plannedOnce(textRows(statement('claim_reported', claimOneText(t, names.paused.sql, true)))),
    nextClaimable: statement('next_claimable', nextClaimableText(t, names.paused.sql)),
    ackBatch: statement(
      'ack',
      `DELETE FROM ${t} AS t USING ${PAIRS} WHERE ${PAIRS_MATCH} RETURNING ${PAIRS_RETURNING}, pg_current_xact_id() AS xid`,
    ),
    ackMissed: statement('ack_missed', ackMissedText(t)),
    retry: statement('retry', retryText(t, TOKEN_FENCE, false)),
    terminalDelete: statement('terminal', `DELETE FROM ${t} WHERE id = $1::bigint AND ${TOKEN_FENCE}`),
    dlqMove: names.dlq === undefined ? undefined : statement('dlq', dlqMoveText(t, names.dlq.sql, TOKEN_FENCE, false)),
    renewLeases: statement(
      'renew',
      `UPDATE ${t} AS t SET acquired_at = now() FROM ${PAIRS} WHERE ${PAIRS_MATCH} RETURNING ${PAIRS_RETURNING}`,
    ),
    releaseLeases: statement(
      'release',
      `UPDATE ${t} AS t SET acquired_token = NULL, acquired_at = NULL, deliveries_count = greatest(t.deliveries_count - 1, 0)
FROM ${PAIRS} WHERE ${PAIRS_MATCH}`,
    ),
    releaseExpired: statement(
      'release_expired',
      `UPDATE ${t} AS t SET acquired_token = NULL, acquired_at = NULL
WHERE t.id = ANY(ARRAY(
  SELECT id FROM ${t}
  WHERE acquired_token IS NOT NULL AND queue = ANY($1::text[])
    AND acquired_at < now() - $2::double precision * interval '1 millisecond' AND id <> ALL($3::bigint[])
  ORDER BY acquired_at
  LIMIT $4
  FOR UPDATE SKIP LOCKED
))
RETURNING t.id::text AS id`,
    ),
    lockLease: statement(
      'lock_lease',
      `SELECT id::text AS id FROM ${t} WHERE id = $1::bigint AND acquired_token = $2::uuid FOR UPDATE`,
    ),
    refreshHeldLease: statement(
      'refresh_held',
      `UPDATE ${t} SET acquired_at = clock_timestamp() WHERE id = $1::bigint AND ${TOKEN_FENCE}`,
    ),
    unwritten: statement(
      'unwritten',
      `SELECT count(*)::int AS unwritten FROM ${t} AS o JOIN unnest($1::bigint[], $2::int[]) AS w (id, attempts) ON o.id = w.id
WHERE o.id = ANY($1::bigint[]) AND o.attempts_count <= w.attempts`,
    ),
  };
}
