/**
 * The harness's ledger, kept in the scenario's own database next to the outbox so that a record
 * and the write it describes commit together:
 * - chaos_published: one row per committed outbox row, written in the publishing transaction
 *   (by the load generator for chain roots, by the handler for each follow-up);
 * - chaos_handled: one row per committed handler run, written in the handler's transaction
 *   together with the follow-up it publishes (so a run that rolled back is no run);
 * - chaos_failures: handler runs that threw, written on their own (best effort: during an outage
 *   the write fails too).
 * Accounting joins them with the outbox and DLQ tables by row id.
 */

/** The product's tables, named explicitly so the accounting does not depend on defaults. */
export const OUTBOX_TABLE = 'public.outbox';
export const DLQ_TABLE = 'public.outbox_dlq';
export const QUEUE = 'chaos';

export const CREATE_LEDGER = `
CREATE TABLE chaos_published (
  message_id bigint PRIMARY KEY,
  key text NOT NULL,
  parent_id bigint,
  poison boolean NOT NULL,
  at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE chaos_handled (
  message_id bigint NOT NULL,
  key text NOT NULL,
  pid integer NOT NULL,
  delivery integer NOT NULL,
  started_at timestamptz NOT NULL,
  transactional boolean NOT NULL,
  at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX chaos_handled_message_idx ON chaos_handled (message_id);
CREATE TABLE chaos_failures (
  message_id bigint NOT NULL,
  key text NOT NULL,
  pid integer NOT NULL,
  error_name text NOT NULL,
  error text NOT NULL,
  at timestamptz NOT NULL DEFAULT clock_timestamp()
);`;

/** $1 message id, $2 key, $3 parent id (null for a root), $4 poison. */
export const INSERT_PUBLISHED = 'INSERT INTO chaos_published (message_id, key, parent_id, poison) VALUES ($1, $2, $3, $4)';

/**
 * $1 message id, $2 key, $3 pid, $4 deliveriesCount, $5 handler start (epoch ms), $6 whether the
 * run was a transactional subscription's (written in ctx.client's transaction, with the ack).
 */
export const INSERT_HANDLED =
  'INSERT INTO chaos_handled (message_id, key, pid, delivery, started_at, transactional) VALUES ($1, $2, $3, $4, to_timestamp($5::float8 / 1000), $6)';

/** $1 message id, $2 key, $3 pid, $4 error class, $5 error message, $6 when the run failed (null: the write's own time). */
export const INSERT_FAILURE =
  'INSERT INTO chaos_failures (message_id, key, pid, error_name, error, at) VALUES ($1, $2, $3, $4, $5, coalesce($6::timestamptz, clock_timestamp()))';

/** Rows still in the outbox (due or not, leased or not). */
export const COUNT_OUTBOX = `SELECT count(*)::int AS n FROM ${OUTBOX_TABLE}`;

/** The highest row id in the outbox (0 when empty): a relay scenario's backlog at a moment. */
export const MAX_OUTBOX_ID = `SELECT coalesce(max(id), 0)::text AS id FROM ${OUTBOX_TABLE}`;

/** Rows with an id up to $1 still in the outbox (a relay deletes a row only once the broker confirmed it). */
export const COUNT_OUTBOX_UP_TO = `SELECT count(*)::int AS n FROM ${OUTBOX_TABLE} WHERE id <= $1::bigint`;

/** Committed handler runs so far, and the latest one (epoch ms): the progress line and stall checks. */
export const HANDLED_SO_FAR = `SELECT count(*)::int AS n, (extract(epoch FROM max(at)) * 1000)::float8 AS last FROM chaos_handled`;

/** Handler start times (epoch ms) between $1 and $2, in order: gaps in handling. */
export const RUN_STARTS_BETWEEN = `
SELECT (extract(epoch FROM started_at) * 1000)::float8 AS t
FROM chaos_handled
WHERE started_at >= to_timestamp($1::float8 / 1000) AND started_at < to_timestamp($2::float8 / 1000)
ORDER BY started_at`;

/** Every published row with what became of it (epoch ms throughout). */
export const ACCOUNT_MESSAGES = `
SELECT p.message_id::text AS id, p.key, p.poison,
       (extract(epoch FROM p.at) * 1000)::float8 AS published_at,
       coalesce((SELECT json_agg(json_build_object(
                  'pid', h.pid, 'delivery', h.delivery, 'transactional', h.transactional,
                  'startedAt', extract(epoch FROM h.started_at) * 1000,
                  'at', extract(epoch FROM h.at) * 1000) ORDER BY h.at)
                 FROM chaos_handled h WHERE h.message_id = p.message_id), '[]'::json) AS runs,
       coalesce((SELECT json_agg(d.failure_reason) FROM ${DLQ_TABLE} d WHERE d.original_id = p.message_id), '[]'::json)
         AS dlq_reasons,
       (SELECT left(d.last_exception, 200) FROM ${DLQ_TABLE} d WHERE d.original_id = p.message_id LIMIT 1) AS dlq_exception,
       EXISTS (SELECT 1 FROM ${OUTBOX_TABLE} o WHERE o.id = p.message_id) AS in_table
FROM chaos_published p
ORDER BY p.message_id`;

/**
 * Rows the ledger does not know (should be none): outbox or DLQ rows (a publish the ledger missed),
 * and handler runs, committed or failed, of a row id no publish returned. The last are what only
 * the handlers saw: a row the product copied under a new id, or a publish that wrote two rows, is
 * handled and gone from the outbox by the end; the accounting walks chaos_published and never meets
 * it. handled_ids: a few of them (as text), for the report.
 */
export const UNKNOWN_ROWS = `
SELECT (SELECT count(*) FROM ${OUTBOX_TABLE} o WHERE NOT EXISTS (SELECT 1 FROM chaos_published p WHERE p.message_id = o.id))::int
         AS outbox,
       (SELECT count(*) FROM ${DLQ_TABLE} d WHERE NOT EXISTS (SELECT 1 FROM chaos_published p WHERE p.message_id = d.original_id))::int
         AS dlq,
       (SELECT count(*) FROM chaos_handled h WHERE NOT EXISTS (SELECT 1 FROM chaos_published p WHERE p.message_id = h.message_id))::int
         AS handled,
       (SELECT count(*) FROM chaos_failures f WHERE NOT EXISTS (SELECT 1 FROM chaos_published p WHERE p.message_id = f.message_id))::int
         AS failed,
       (SELECT coalesce(array_agg(u.id::text ORDER BY u.id), '{}') FROM (
          SELECT DISTINCT h.message_id AS id FROM chaos_handled h
          WHERE NOT EXISTS (SELECT 1 FROM chaos_published p WHERE p.message_id = h.message_id)
          UNION
          SELECT DISTINCT f.message_id FROM chaos_failures f
          WHERE NOT EXISTS (SELECT 1 FROM chaos_published p WHERE p.message_id = f.message_id)
          ORDER BY 1 LIMIT 5) u)
         AS handled_ids`;

/** Handler failures (epoch ms). */
export const ACCOUNT_FAILURES = `
SELECT message_id::text AS id, pid, error_name, left(error, 200) AS error, (extract(epoch FROM at) * 1000)::float8 AS at
FROM chaos_failures ORDER BY at`;

/** Many roots at once: $1 message ids, $2 keys, $3 poison flags (arrays of one length). */
export const INSERT_PUBLISHED_MANY = `
INSERT INTO chaos_published (message_id, key, parent_id, poison)
SELECT id, key, NULL, poison FROM unnest($1::bigint[], $2::text[], $3::boolean[]) AS t (id, key, poison)`;

/** Published rows so far. */
export const COUNT_PUBLISHED = 'SELECT count(*)::int AS n FROM chaos_published';

/**
 * Terminates one random client backend of database $1 that is not the harness's own (by
 * application_name): the consumers' pools, LISTEN and NOTIFY connections, the handlers' pools.
 */
export const TERMINATE_RANDOM_BACKEND = `
SELECT count(*)::int AS n FROM (
  SELECT pg_terminate_backend(pid) AS done FROM (
    SELECT pid FROM pg_stat_activity
    WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()
      AND coalesce(application_name, '') <> $2
    ORDER BY random() LIMIT 1) victims) t
WHERE done`;
