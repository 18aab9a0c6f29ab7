import type { SchemaNames } from '../schema/schema-names.js';

/** The depth states of an outbox row, as the partial indexes split them (DESIGN §3). */
export type DepthState = 'ready' | 'scheduled' | 'leased';

export interface QueueStateSql {
  /** The snapshot transaction: one consistent view, read-only, with a server-side time limit. */
  readonly begin: (statementTimeoutMs: number) => string;
  /** Per-queue capped counts and oldest-ready age: see the comment in buildQueueStateSql. */
  readonly snapshot: string;
  /** The same for exactly the queues named ($1 cap, $2 text[] queues), empty or not. */
  readonly named: string;
  /** One planner estimate per state, for counts above the cap ($1 queue). */
  readonly estimate: Readonly<Record<DepthState | 'dlq', string | undefined>>;
}

/**
 * A loose index scan ("skip scan") for the distinct queues of an index whose leading column is
 * `queue`: one index probe per distinct queue (`min(queue) > previous`) instead of reading every
 * row. Postgres has no native skip scan before 18, and 18's does not cover DISTINCT. `where`
 * repeats the partial index's predicate so the planner may use that index.
 */
function distinctQueues(cte: string, table: string, where: string): string {
  const extra = where === '' ? '' : `${where} AND `;
  const first = where === '' ? '' : `WHERE ${where} `;
  return `${cte}(queue) AS (
    (SELECT t.queue FROM ${table} t ${first}ORDER BY t.queue LIMIT 1)
    UNION ALL
    SELECT (SELECT t.queue FROM ${table} t WHERE ${extra}t.queue > p.queue ORDER BY t.queue LIMIT 1)
    FROM ${cte} p WHERE p.queue IS NOT NULL
  )`;
}

/**
 * The skip scan of the ready index `(queue, next_attempt_at, id) WHERE acquired_token IS NULL`
 * that also returns each queue's first entry's `next_attempt_at`: the same probe that finds the
 * queue gives its oldest unleased row, which is its oldest ready row when it is due. A LATERAL
 * step (not a scalar subquery) so one probe returns both columns; it ends when no queue is left.
 */
function readyQueues(table: string): string {
  const head = `SELECT t.queue, t.next_attempt_at FROM ${table} t WHERE t.acquired_token IS NULL`;
  const order = 'ORDER BY t.queue, t.next_attempt_at, t.id LIMIT 1';
  return `ready_queues(queue, first_due) AS (
    (${head} ${order})
    UNION ALL
    SELECT n.queue, n.next_attempt_at FROM ready_queues p CROSS JOIN LATERAL (${head} AND t.queue > p.queue ${order}) n
  )`;
}

/** count(*) of at most $1 rows of `from … where`: an index range scan that stops at the cap. */
function cappedCount(from: string, where: string): string {
  return `(SELECT count(*) FROM (SELECT 1 FROM ${from} WHERE ${where} LIMIT $1) capped)::int`;
}

const READY = 'o.acquired_token IS NULL AND o.next_attempt_at <= now()';
const SCHEDULED = 'o.acquired_token IS NULL AND o.next_attempt_at > now()';
const LEASED = 'o.acquired_token IS NOT NULL';

/**
 * Built once per collector from validated, quoted identifiers (schema-names.ts); every value is a
 * bound parameter. Bounded cost on any table size: one ready-index probe per distinct queue with
 * unleased rows, at most $2 probes of the lease and DLQ indexes each, and per queue reported three
 * range scans of the two partial indexes and one of the DLQ's (queue, failed_at) index, each
 * stopped after $1 rows. Nothing reads the heap beyond those rows.
 */
export function buildQueueStateSql(names: SchemaNames): QueueStateSql {
  const outbox = names.outbox.sql;
  const dlq = names.dlq?.sql;
  const ctes = [
    // <table>_ready_idx (queue, next_attempt_at, id) WHERE acquired_token IS NULL
    readyQueues(outbox),
    // <table>_lease_idx (queue, acquired_at) WHERE acquired_token IS NOT NULL
    distinctQueues('leased_queues', outbox, 't.acquired_token IS NOT NULL'),
    // <dlq>_failed_idx (queue, failed_at)
    ...(dlq === undefined ? [] : [distinctQueues('dlq_queues', dlq, '')]),
  ];
  // Queues without unleased rows can rank only by name among the queues with rows, so the first
  // $2 names of each of these indexes are all that can make the cut.
  const byName = ['leased_queues', ...(dlq === undefined ? [] : ['dlq_queues'])].map(
    (cte) =>
      `SELECT queue, true, NULL::timestamptz, false FROM (SELECT queue FROM ${cte} WHERE queue IS NOT NULL LIMIT $2) ${cte}_capped`,
  );
  const sameQueue = 'o.queue = q.queue';
  const paused = names.paused.sql;
  /*
   * Parameters: $1 int  the count cap (exactCountLimit + 1: reaching it means "over the limit")
   *             $2 int  the most queues reported
   *             $3 text[] queues subscribed to or recently drained (they read 0 rather than vanish)
   * Paused queues (<t>_paused, a handful of rows) are always candidates and rank first: a paused,
   * empty queue is still reported, with its pause, however many queues have rows. Ranked last among
   * the empty ones it fell past $2 once that many queues had rows, and the pause vanished from
   * status and the queue_paused gauge an alert on a pause left on watches. First rather than
   * outside the cut: $2 stays the most queues counted (the statement's cost, the gauges' series),
   * and only more than $2 pauses at once would hide one.
   * Indexes: the ready and lease partial indexes of the outbox, the DLQ's (queue, failed_at) index.
   *
   * Queues are ranked and cut at $2: the paused ones first, then by activity: the oldest ready
   * row first (the consumer lag an alert watches), then the other queues with rows, then the
   * remembered empty ones, by name within each. Cutting by name alone hid a backlogged queue that sorted after maxQueues others
   * (issue 13, item 10). So every queue with unleased rows is found — one probe of the ready
   * index each, which also gives its oldest row — while the counts, the expensive part, run only
   * for the $2 queues kept.
   */
  // The counts per queue of a `queues (queue, oldest_ready_at)` CTE: the expensive part, per queue kept.
  const counts = `SELECT q.queue,
  ${cappedCount(`${outbox} o`, `${sameQueue} AND ${READY}`)} AS ready,
  ${cappedCount(`${outbox} o`, `${sameQueue} AND ${SCHEDULED}`)} AS scheduled,
  ${cappedCount(`${outbox} o`, `${sameQueue} AND ${LEASED}`)} AS leased,
  extract(epoch FROM now() - q.oldest_ready_at)::float8 AS oldest_ready_age_seconds,
  ${dlq === undefined ? 'NULL::int' : cappedCount(`${dlq} o`, sameQueue)} AS dlq,
  p.paused_at, p.reason AS pause_reason
FROM queues q LEFT JOIN ${paused} p ON p.queue = q.queue
ORDER BY q.queue`;
  const snapshot = `WITH RECURSIVE
  ${ctes.join(',\n  ')},
  candidates AS (
    SELECT queue, bool_or(has_rows) AS has_rows, min(first_due) AS first_due, bool_or(paused) AS paused FROM (
      SELECT queue, true AS has_rows, first_due, false AS paused FROM ready_queues
      ${byName.map((sql) => `UNION ALL ${sql}`).join('\n      ')}
      UNION ALL SELECT unnest($3::text[]), false, NULL, false
      UNION ALL SELECT queue, false, NULL, true FROM ${paused}
    ) every_queue GROUP BY queue
  ),
  queues AS (
    SELECT queue, CASE WHEN first_due <= now() THEN first_due END AS oldest_ready_at
    FROM candidates
    ORDER BY paused DESC, oldest_ready_at NULLS LAST, has_rows DESC, queue
    LIMIT $2
  )
${counts}`;
  /*
   * The same numbers for exactly the queues named ($1 the cap, $2 text[] the queues), empty ones
   * included: no ranking, no discovery. One ready-index probe per queue for its oldest ready row.
   */
  const named = `WITH queues AS (
    SELECT q.queue, (SELECT o.next_attempt_at FROM ${outbox} o WHERE ${sameQueue} AND ${READY}
      ORDER BY o.next_attempt_at, o.id LIMIT 1) AS oldest_ready_at
    FROM (SELECT DISTINCT unnest($2::text[]) AS queue) q
  )
${counts}`;

  // $1 text: the queue. The planner's row estimate for the same predicate the capped count used.
  const explain = (from: string, where: string) => `EXPLAIN (FORMAT JSON) SELECT 1 FROM ${from} WHERE o.queue = $1 AND ${where}`;
  return {
    begin: (statementTimeoutMs) =>
      `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = ${Math.trunc(statementTimeoutMs)}`,
    snapshot,
    named,
    estimate: {
      ready: explain(`${outbox} o`, READY),
      scheduled: explain(`${outbox} o`, SCHEDULED),
      leased: explain(`${outbox} o`, LEASED),
      dlq: dlq === undefined ? undefined : explain(`${dlq} o`, 'true'),
    },
  };
}
