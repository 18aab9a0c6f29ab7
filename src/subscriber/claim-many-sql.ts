/**
 * The candidate pick of a claim over several queues ($1 text[], $3 limit), shared by both lease
 * modes (sql.ts, row-lock-sql.ts): claimManyCtes for the ready branch, claimManyLazyCte for the
 * expired-lease branch.
 *
 * Why not one locking walk per queue, merged (the statement before issue 18): each walk locked up
 * to $3 rows before the merge kept the oldest $3, so a claim locked queues × $3 rows (at 1,000
 * queues × 20 ready rows: the whole backlog) and its cost grew with the queue count. Here the
 * locked rows stay about $3 whatever the queue count, in three steps:
 *
 * 1. Heads, unlocked: per listed queue that is not paused, its first row in the branch's index order
 *    (one index probe; `filter` is left to the locking walks). Q' = the queues that have one. This
 *    is what still grows with the queues.
 * 2. Cutoff, unlocked: with n = ceil($3 / Q'), each of those queues' n-th row (its last if it has
 *    fewer; for n = 1 the head itself), and how many rows it holds up to there. In key order, the
 *    first of these points where the running count reaches $3 is the cutoff: at least $3 rows
 *    lie at or before it, so the oldest $3 rows of the listed queues all do. If the count never
 *    reaches $3, the last point (every queue's first n rows).
 * 3. The locking walk, per queue whose head is at or before the cutoff: the single-queue walk
 *    (ordered, FOR UPDATE SKIP LOCKED, at most $3), stopped at the cutoff by an index condition,
 *    then merged and cut to the oldest $3. With evenly mixed queues it locks about $3 rows; a queue
 *    with few, widely spread rows can push the cutoff later (then more rows of the other queues are
 *    locked and dropped, never more per queue than the old statement locked). A dropped row stays
 *    locked until the claim's transaction ends: the statement, in lease mode; the whole batch in
 *    row-lock mode, where other consumers skip it meanwhile (it is claimed after the batch).
 * Step 3 can come up short: the rows before the cutoff are locked by a concurrent claim (a
 * subscription pipelines two), or queues had fewer than n rows. Then one fill pass, run only if
 * step 3 came up short (Append is lazy under the outer LIMIT): the queues in head order, up to n
 * more rows each, stopped as soon as the claim is full, so it locks only what it keeps. It trades
 * exact age order for that bound (a claim that collided takes each queue's next n rows, oldest
 * queue first). If it too comes up short (queues of very unequal length), the claim returns fewer
 * rows than asked and the next claim goes on.
 *
 * Order across queues: the oldest-first merge of step 3 holds within the rows before the cutoff, so
 * a full first pass is exactly the oldest $3 rows (less the rows others hold locked, as SKIP LOCKED
 * always meant); a queue with old rows is visited first in both passes and never waits behind a
 * busy one. Per queue the walk is the single-queue one: FIFO by the index order, per-key order by
 * `where`.
 */

/** One branch's per-queue walk: its index, its predicate, its key order. */
export interface QueueWalk {
  /** CTE name prefix and the branch CTE's own name (`ready`, `expired`). */
  readonly name: string;
  readonly table: string;
  readonly paused: string;
  /** The index's predicate for a row `o` of queue `queue` (an SQL expression), but for `due`. */
  readonly where: (queue: string) => string;
  /**
   * A further test of `o` in the locking walks only ('' for none): the ready branch's keyTurn. The
   * unlocked probes leave it out (a probe that stays in the index is cheaper to plan and to run); a
   * keyed row waiting for its turn can then be a head or count towards the cutoff, and the locking
   * walk skips it: the claim may take fewer rows before the cutoff and the fill pass more.
   */
  readonly filter: string;
  /**
   * The index's upper bound on the first order key (the row is due, the lease expired). The first
   * pass replaces it by the cutoff, which implies it: with both, the B-tree cannot end the scan at
   * the cutoff's row comparison (it marks only one upper bound of a column as required) and walks
   * the queue's whole due range.
   */
  readonly due: string;
  /** The index's order columns after `queue` (`next_attempt_at, id`; `acquired_at`). */
  readonly keys: readonly string[];
  /** More columns of `o` the branch returns (row-lock mode returns the row itself); '' for none. */
  readonly fields: string;
}

/** A walk's SQL pieces, shared by both pick shapes below. */
function parts(walk: QueueWalk) {
  const keys = walk.keys;
  const list = (alias: string) => keys.map((k) => `${alias}.${k}`).join(', ');
  // The walk's columns: the id, the order keys (the merge sorts on them), the returned fields.
  const cols = ['o.id', ...keys.filter((k) => k !== 'id').map((k) => `o.${k}`), ...(walk.fields === '' ? [] : [walk.fields])];
  const order = `ORDER BY ${list('o')}`;
  /** The locking single-queue walk of `queue` under `bound` (an upper bound on the keys), at most `limit` rows. */
  const lockingWalk = (queue: string, bound: string, limit: string) => `SELECT ${cols.join(', ')} FROM ${walk.table} AS o
    WHERE ${walk.where(queue)}${walk.filter === '' ? '' : ` AND ${walk.filter}`} AND ${bound}
    ${order}
    LIMIT ${limit}
    FOR UPDATE SKIP LOCKED`;
  /** Per listed queue that is not paused, its first row's keys (unlocked). */
  const heads = `SELECT q.queue, ${list('h')} FROM unnest($1::text[]) AS q(queue)
  CROSS JOIN LATERAL (
    SELECT ${list('o')} FROM ${walk.table} AS o
    WHERE ${walk.where('q.queue')} AND ${walk.due}
    ${order}
    LIMIT 1
  ) AS h
  WHERE NOT EXISTS (SELECT 1 FROM ${walk.paused} AS p WHERE p.queue = q.queue)`;
  return { keys, list, order, lockingWalk, heads };
}

/**
 * The ready branch: heads, cutoff, the merged locking walk up to the cutoff, and one fill pass.
 * Comma-separated CTE definitions (no leading WITH); the branch is the CTE named `walk.name`.
 */
export function claimManyCtes(walk: QueueWalk): string {
  const { name } = walk;
  const { keys, list, order, lockingWalk, heads } = parts(walk);
  const rowOf = (alias: string) => `(${list(alias)})`;
  const [h, share, points, cutoff, first, fill] = ['heads', 'share', 'points', 'cutoff', '1', '2'].map((s) => `${name}_${s}`);
  return `${h} AS (
  ${heads}
), ${share} AS (
  SELECT (($3::int + count(*) - 1) / greatest(count(*), 1))::int AS n FROM ${h}
), ${points} AS (
  SELECT ${list('h')}, 1 AS rows FROM ${h} AS h WHERE (SELECT n FROM ${share}) = 1
  UNION ALL
  SELECT ${list('l')}, l.rows FROM ${h} AS h
  CROSS JOIN ${share} AS s
  CROSS JOIN LATERAL (
    SELECT ${list('w')}, w.rows FROM (
      SELECT ${list('o')}, row_number() OVER (${order}) AS rows FROM ${walk.table} AS o
      WHERE ${walk.where('h.queue')} AND ${walk.due}
      ${order}
      LIMIT s.n
    ) AS w
    ORDER BY w.rows DESC
    LIMIT 1
  ) AS l
  -- A one-time filter: for n = 1 the heads are the points, and no queue is probed again.
  WHERE (SELECT n FROM ${share}) > 1
), ${cutoff} AS (
  SELECT ${keys.join(', ')} FROM (
    SELECT ${list('p')}, sum(p.rows) OVER (ORDER BY ${list('p')}) AS reached FROM ${points} AS p
  ) AS r
  ORDER BY least(reached, $3::int) DESC, ${keys.join(', ')}
  LIMIT 1
), ${first} AS (
  SELECT c.* FROM ${h} AS h
  CROSS JOIN ${cutoff} AS x
  CROSS JOIN LATERAL (
    ${lockingWalk('h.queue', `${rowOf('o')} <= ${rowOf('x')}`, '$3')}
  ) AS c
  WHERE ${rowOf('h')} <= ${rowOf('x')}
  ORDER BY ${list('c')}
  LIMIT $3
), ${fill} AS (
  SELECT c.* FROM (SELECT * FROM ${h} ORDER BY ${keys.join(', ')}) AS h
  CROSS JOIN ${share} AS s
  CROSS JOIN LATERAL (
    ${lockingWalk('h.queue', `${walk.due}\n      AND o.id <> ALL(ARRAY(SELECT id FROM ${first}))`, 's.n')}
  ) AS c
  LIMIT greatest($3::int - (SELECT count(*) FROM ${first})::int, 0)
), ${name} AS (
  SELECT * FROM ${first} UNION ALL SELECT * FROM ${fill}
)`;
}

/**
 * The expired-lease branch (rare: rows whose holder died; runs only when the ready branch came up
 * short). No cutoff: the queues in the order of their oldest expired lease, each walked (locking,
 * at most $3) until the claim is full, so it locks only what it keeps. Across queues the order is
 * by queue, not by row: a queue's expired rows come back together.
 */
export function claimManyLazyCte(walk: QueueWalk): string {
  const { keys, lockingWalk, heads } = parts(walk);
  return `${walk.name} AS (
  SELECT c.* FROM (
  ${heads}
  ORDER BY ${keys.map((k) => `h.${k}`).join(', ')}
  ) AS h
  CROSS JOIN LATERAL (
    ${lockingWalk('h.queue', walk.due, '$3')}
  ) AS c
  LIMIT $3
)`;
}

/** A claim's report (claimReport): its CTE, and the final SELECT around the claimed rows' select list. */
export interface ClaimReport {
  /** A CTE definition (no leading WITH) placed after the claim's `picked` and `claimed`. */
  readonly cte: string;
  /** The statement's last SELECT: the claimed rows (`list`, their select list over `claimed`) in `order`, then the reports. */
  readonly select: (list: string, order: string) => string;
}

/**
 * The names of the two columns every claimMany row ends with: a report row's queue and the
 * milliseconds until its next ready row is due (text); NULL on a claimed row. A report row's id
 * and claimed columns are NULL. Read by queue-schedule.ts splitClaimRows (the last two columns).
 */
export const REPORT_COLUMNS = ['report_queue', 'report_due_ms'] as const;

/** |ms| beyond this is clamped (an `infinity` next_attempt_at written by hand must not fail the cast). */
const REPORT_CLAMP_MS = '1e12';

/**
 * Per listed queue ($1; with `single`, the one queue $1 of a claimOne), after the claim: the milliseconds until its first ready row that this
 * claim did not take is due (<= 0: due now), NULL when it has none or is paused. One index probe
 * per listed queue (the ready walk's index, in its order; it steps over at most the $3 rows just
 * picked). Rows whose key waits for its turn count as due (keyTurn is left out: the queue is then
 * listed again, which costs a probe, never a stranded row). Rows leased elsewhere are not in the
 * ready index: an expired lease is found when the safety net lists the queue again
 * (queue-schedule.ts). In the claim's snapshot: rows published after it are announced by their
 * NOTIFY, which the schedule orders after this report.
 */
export function claimReport(walk: QueueWalk, single = false): ClaimReport {
  // `single`: $1 is one queue (text), the claimOne statements' parameter (see sql.ts claimOneReported).
  const listed = single ? '(VALUES ($1::text)) AS q(queue)' : 'unnest($1::text[]) AS q(queue)';
  const [first] = walk.keys;
  const due = `ceil(greatest(least((extract(epoch FROM o.${first}) - extract(epoch FROM now())) * 1000, ${REPORT_CLAMP_MS}), -${REPORT_CLAMP_MS}))::int8`;
  const [queueColumn, dueColumn] = REPORT_COLUMNS;
  return {
    cte: `report AS (
  SELECT q.queue, CASE WHEN EXISTS (SELECT 1 FROM ${walk.paused} AS p WHERE p.queue = q.queue) THEN NULL ELSE (
    SELECT ${due} FROM ${walk.table} AS o
    WHERE ${walk.where('q.queue')} AND o.id <> ALL(ARRAY(SELECT id FROM picked))
    ORDER BY ${walk.keys.map((k) => `o.${k}`).join(', ')}
    LIMIT 1
  ) END AS due_ms
  FROM ${listed}
)`,
    // The claimed rows keep their order (the first branch of a UNION ALL is returned first); the
    // report rows take the claimed rows' columns as NULLs of the right types from a join that
    // matches nothing.
    select: (list, order) => `(SELECT ${list}, NULL::text AS ${queueColumn}, NULL::text AS ${dueColumn} FROM claimed ${order})
UNION ALL
SELECT e.*, r.queue, r.due_ms::text FROM report AS r LEFT JOIN (SELECT ${list} FROM claimed) AS e ON false`,
  };
}
