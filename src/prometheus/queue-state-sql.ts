import type { SchemaNames } from '../schema/schema-names.js';

/** The depth states of an outbox row, as the partial indexes split them (DESIGN §3). */
export type DepthState = 'ready' | 'scheduled' | 'leased';

export interface QueueStateSql {
  /** The snapshot transaction: one consistent view, read-only, with a server-side time limit. */
  readonly begin: (statementTimeoutMs: number) => string;
  /** Per-queue capped counts and oldest-ready age: see the comment in buildQueueStateSql. */
  readonly snapshot: string;
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

/** count(*) of at most $1 rows of `from … where`: an index range scan that stops at the cap. */
function cappedCount(from: string, where: string): string {
  return `(SELECT count(*) FROM (SELECT 1 FROM ${from} WHERE ${where} LIMIT $1) capped)::int`;
}

const READY = 'o.acquired_token IS NULL AND o.next_attempt_at <= now()';
const SCHEDULED = 'o.acquired_token IS NULL AND o.next_attempt_at > now()';
const LEASED = 'o.acquired_token IS NOT NULL';

/**
 * Built once per collector from validated, quoted identifiers (schema-names.ts); every value is a
 * bound parameter. Bounded cost on any table size: per queue, three range scans of the two partial
 * indexes and one of the DLQ's (queue, failed_at) index, each stopped after $1 rows, plus one
 * index probe for the oldest ready row. Nothing reads the heap beyond those rows.
 */
export function buildQueueStateSql(names: SchemaNames): QueueStateSql {
  const outbox = names.outbox.sql;
  const dlq = names.dlq?.sql;
  const ctes = [
    // <table>_ready_idx (queue, next_attempt_at, id) WHERE acquired_token IS NULL
    distinctQueues('ready_queues', outbox, 't.acquired_token IS NULL'),
    // <table>_lease_idx (queue, acquired_at) WHERE acquired_token IS NOT NULL
    distinctQueues('leased_queues', outbox, 't.acquired_token IS NOT NULL'),
    // <dlq>_failed_idx (queue, failed_at)
    ...(dlq === undefined ? [] : [distinctQueues('dlq_queues', dlq, '')]),
  ];
  const sources = ['ready_queues', 'leased_queues', ...(dlq === undefined ? [] : ['dlq_queues'])].map(
    (cte) => `SELECT queue FROM (SELECT queue FROM ${cte} WHERE queue IS NOT NULL LIMIT $2) ${cte}_capped`,
  );
  const sameQueue = 'o.queue = q.queue';
  /*
   * Parameters: $1 int  the count cap (exactCountLimit + 1: reaching it means "over the limit")
   *             $2 int  the most queues reported
   *             $3 text[] queues subscribed to or reported before (0 once drained: alerts see 0, not absent)
   * Indexes: the ready and lease partial indexes of the outbox, the DLQ's (queue, failed_at) index.
   */
  const snapshot = `WITH RECURSIVE
  ${ctes.join(',\n  ')},
  queues AS (
    SELECT queue FROM (
      ${sources.join('\n      UNION ')}
      UNION SELECT unnest($3::text[])
    ) every_queue ORDER BY queue LIMIT $2
  )
SELECT q.queue,
  ${cappedCount(`${outbox} o`, `${sameQueue} AND ${READY}`)} AS ready,
  ${cappedCount(`${outbox} o`, `${sameQueue} AND ${SCHEDULED}`)} AS scheduled,
  ${cappedCount(`${outbox} o`, `${sameQueue} AND ${LEASED}`)} AS leased,
  extract(epoch FROM now() - (
    SELECT o.next_attempt_at FROM ${outbox} o WHERE ${sameQueue} AND ${READY} ORDER BY o.next_attempt_at, o.id LIMIT 1
  ))::float8 AS oldest_ready_age_seconds,
  ${dlq === undefined ? 'NULL::int' : cappedCount(`${dlq} o`, sameQueue)} AS dlq
FROM queues q
ORDER BY q.queue`;

  // $1 text: the queue. The planner's row estimate for the same predicate the capped count used.
  const explain = (from: string, where: string) => `EXPLAIN (FORMAT JSON) SELECT 1 FROM ${from} WHERE o.queue = $1 AND ${where}`;
  return {
    begin: (statementTimeoutMs) =>
      `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = ${Math.trunc(statementTimeoutMs)}`,
    snapshot,
    estimate: {
      ready: explain(`${outbox} o`, READY),
      scheduled: explain(`${outbox} o`, SCHEDULED),
      leased: explain(`${outbox} o`, LEASED),
      dlq: dlq === undefined ? undefined : explain(`${dlq} o`, 'true'),
    },
  };
}
