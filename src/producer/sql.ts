import type { SchemaNames } from '../schema/schema-names.js';
import { type Statement, statement } from '../util/statement.js';

/**
 * Producer statements, built once per Outbox. Each publish is ONE statement: the insert and its
 * wake-up NOTIFY travel together, so publish costs one round trip.
 *
 * Wake-up: pg_notify runs in the caller's transaction, so a rollback (or a rolled-back savepoint)
 * discards it with the row. Postgres itself delivers identical (channel, payload) notifications of
 * one transaction once, so 1,000 publishes to one queue in one transaction wake listeners once,
 * with no client-side bookkeeping that could go stale across pooled transactions. Future-dated rows
 * (next_attempt_at > now(), by the database clock) and timer conflicts (no row) send nothing.
 * See architecture/producer.md.
 */
export interface ProducerSql {
  /** $1 queue, $2 payload, $3 headers (jsonb), $4 activateAt or NULL, $5 activateInMs (0 = now), $6 channel. */
  readonly publish: Statement;
  /** As publish, plus $7 timer_id; returns no row when (queue, timer_id) is taken. Arbiter: timer_uq. */
  readonly publishTimer: Statement;
  /** $1 queue, $2 payloads (bytea[]), $3 headers (jsonb[]), $4 activateAt or NULL, $5 activateInMs, $6 channel. */
  readonly publishBatch: Statement;
  /** $1 queue, $2 timer_id. Only unleased rows: a leased row's handler is already running. Index: timer_uq. */
  readonly cancelTimer: Statement;
  /**
   * $1 limit. Lease-free read in id order (primary key). ORDER BY names the table's column: a bare
   * `id` would sort by the text alias ("10" before "9").
   */
  readonly fetchUnprocessed: Statement;
  /** $1 queue, $2 limit. */
  readonly fetchUnprocessedQueue: Statement;
}

const NEXT_ATTEMPT = `COALESCE($4::timestamptz, now() + $5::double precision * interval '1 millisecond')`;
const WAKE = `CASE WHEN next_attempt_at <= now() THEN pg_notify($6::text, $1::text) END`;
const ROW_COLUMNS = `id::text AS id, queue, payload, headers, created_at, next_attempt_at, first_attempt_at, last_attempt_at,
  attempts_count, deliveries_count, acquired_at, timer_id`;

export function buildProducerSql(names: SchemaNames): ProducerSql {
  const t = names.outbox.sql;
  const insertValues = `INSERT INTO ${t} (queue, payload, headers, next_attempt_at) VALUES ($1::text, $2::bytea, $3::jsonb, ${NEXT_ATTEMPT})`;
  return {
    publish: statement(
      'publish',
      `WITH inserted AS (${insertValues} RETURNING id, next_attempt_at)
SELECT id::text AS id, ${WAKE} AS woke FROM inserted`,
    ),
    publishTimer: statement(
      'publish_timer',
      `WITH inserted AS (
  INSERT INTO ${t} (queue, payload, headers, next_attempt_at, timer_id)
  VALUES ($1::text, $2::bytea, $3::jsonb, ${NEXT_ATTEMPT}, $7::text)
  ON CONFLICT (queue, timer_id) WHERE timer_id IS NOT NULL DO NOTHING
  RETURNING id, next_attempt_at)
SELECT id::text AS id, ${WAKE} AS woke FROM inserted`,
    ),
    publishBatch: statement(
      'publish_batch',
      `WITH inserted AS (
  INSERT INTO ${t} (queue, payload, headers, next_attempt_at)
  SELECT $1::text, b.payload, b.headers, ${NEXT_ATTEMPT}
  FROM unnest($2::bytea[], $3::jsonb[]) WITH ORDINALITY AS b(payload, headers, ord)
  ORDER BY b.ord
  RETURNING id, next_attempt_at)
SELECT id::text AS id, ${WAKE} AS woke FROM inserted ORDER BY inserted.id`,
    ),
    cancelTimer: statement(
      'cancel_timer',
      `DELETE FROM ${t} WHERE queue = $1::text AND timer_id = $2::text AND acquired_token IS NULL RETURNING id`,
    ),
    fetchUnprocessed: statement('fetch_unprocessed', `SELECT ${ROW_COLUMNS} FROM ${t} ORDER BY ${t}.id LIMIT $1::int`),
    fetchUnprocessedQueue: statement(
      'fetch_unprocessed_queue',
      `SELECT ${ROW_COLUMNS} FROM ${t} WHERE queue = $1::text ORDER BY ${t}.id LIMIT $2::int`,
    ),
  };
}
