import { DUE_ROUNDING_MS } from '../queues/channel-signal.js';
import type { SchemaNames } from '../schema/schema-names.js';
import { type Statement, statement } from '../util/statement.js';

/**
 * Producer statements, built once per Outbox. Each publish is ONE statement, in two variants that
 * differ only in how the wake-up travels (architecture/decisions/0004-wake-up-after-commit.md):
 *
 * - `afterCommit` (the default): the insert returns `due` (next_attempt_at <= now(), by the
 *   database clock) and, for a row not due, `due_in_ms`, per row, and sends nothing. The caller's transaction never calls pg_notify, so
 *   its COMMIT does not take PostgreSQL's cluster-wide notify lock; the publishing process sends
 *   the NOTIFY on its own connection once it has seen the COMMIT (src/producer/wake-after-commit.ts).
 * - `publish` / `publishTimer` / `publishBatch` (`notify: 'in-transaction'`, and executors whose
 *   COMMIT cannot be observed): pg_notify runs in the caller's transaction, so a rollback (or a
 *   rolled-back savepoint) discards it with the row, and Postgres delivers identical (channel,
 *   payload) notifications of one transaction once. The price is the notify lock at every commit.
 *
 * A future-dated row announces when it is due instead (queues/channel-signal.ts): in the
 * statement here, after the COMMIT from Node's side in afterCommit. A timer conflict (no row)
 * wakes nobody.
 * See architecture/producer.md.
 */
export interface ProducerSql {
  /**
   * $1 queue, $2 payload (bytea), $3 headers (JSON text), $4 activateAt (ISO text) or NULL, $5
   * activateInMs (0 = now), $6 channel, $7 ordering key or NULL. Every variant takes the ordering
   * key as its last parameter (see keyLock).
   */
  readonly publish: Statement;
  /** As publish, plus $7 timer_id and $8 the ordering key; returns no row when (queue, timer_id) is taken. Arbiter: timer_uq. */
  readonly publishTimer: Statement;
  /**
   * $1 queue, $2 every payload in publish order, concatenated (bytea), $3 each payload's 1-based
   * start in $2 and $4 its length (decimal numbers joined by commas), $5 each row's headers as JSON
   * text, joined by newlines, $6 activateAt, $7 activateInMs, $8 channel, $9 the ordering key of
   * every row or NULL. See BATCH_ROWS. Returns ONE row: `ids`, the ids in publish order joined by
   * commas, and `woke` (here) or `due` and `due_in_ms` (afterCommit; the earliest row's), over the
   * whole batch.
   */
  readonly publishBatch: Statement;
  /**
   * The same inserts without pg_notify and without the channel parameter (publishTimer: $6 is the
   * timer_id; the ordering key still last); each row returns `due`, and `due_in_ms` when not due.
   */
  readonly afterCommit: {
    readonly publish: Statement;
    readonly publishTimer: Statement;
    readonly publishBatch: Statement;
  };
  /**
   * $1 queue, $2 timer_id. Only an unleased row nobody holds locked: a leased row's handler is
   * already running, and so is a locked one's (a row-lock batch). Index: timer_uq, then the primary key.
   * Returns the cancelled row's id (no row: nothing cancelled) with `due` and `due_in_ms` of the
   * earliest keyed row the cancel gave its own time back (NULL: none), as afterCommit's publish.
   */
  readonly cancelTimer: Statement;
  /** $1 channel, $2 payload: a wake-up sent inside the caller's transaction (cancelTimer's, in-transaction). */
  readonly notifyInTransaction: Statement;
  /**
   * $1 limit. Lease-free read in id order (primary key). ORDER BY names the table's column: a bare
   * `id` would sort by the text alias ("10" before "9"). Columns as PORTABLE_ROW_COLUMNS says.
   */
  readonly fetchUnprocessed: Statement;
  /** $1 queue, $2 limit. */
  readonly fetchUnprocessedQueue: Statement;
}

/*
 * Driver-neutral by construction: these statements also run through other data layers' raw-SQL
 * calls (postgres.js, Prisma, Knex, …), which encode parameters their own way and often by the type
 * the server reports for each placeholder. So every parameter is a string, a number, null or the
 * one bytea payload; JSON and timestamps are cast from text (`$n::text::jsonb`: a driver that
 * JSON-encodes values bound to jsonb would otherwise store a JSON string), a batch is one bytea and
 * three texts split in SQL instead of arrays (drivers disagree on bytea[] and jsonb[], and Knex
 * expands arrays), and no
 * result column is `void` (Prisma cannot decode one): pg_notify's result is tested, not returned.
 */
const nextAttempt = (at: number) =>
  `COALESCE($${at}::text::timestamptz, now() + $${at + 1}::double precision * interval '1 millisecond')`;
/**
 * How long until `dueAt`, in ms (double precision, never below 0), by the database's clock at the
 * statement: a future row's announcement on the channel (queues/channel-signal.ts) carries it, as
 * does a consumer's read of the due times it missed (subscriber/due-times-sql.ts). It
 * reaches the consumers after the COMMIT, later than this clock read, so their wake-up is never
 * early by the database's clock (Node's may differ; subscriber/due-alarm.ts). Read on the
 * database's clock, not the publisher's: activateAt is compared with the database's, and a keyed
 * row may be due later than its own delay (keyedNextAttempt).
 */
export const dueInMs = (dueAt: string) =>
  `GREATEST(0, extract(epoch FROM ${dueAt} - clock_timestamp()) * 1000)::double precision`;
/** duePayload's rounding (queues/channel-signal.ts) of dueInMs, in SQL: up to the next 10 ms. */
const roundedDueInMs = (dueAt: string) => `(ceil(${dueInMs(dueAt)} / ${DUE_ROUNDING_MS}) * ${DUE_ROUNDING_MS})::bigint`;
/**
 * The in-transaction variants' wake-up of rows due at `at`: their queue when they are due, else
 * duePayload (queues/channel-signal.ts) built in SQL. A boolean, never void (see above).
 */
export const wakeOrAnnounce = (channel: string, queue: string, at: string) =>
  `CASE WHEN ${at} <= now() THEN pg_notify(${channel}, ${queue}) IS NOT NULL
    ELSE pg_notify(${channel}, chr(1) || 'due' || chr(1) || ${roundedDueInMs(at)}::text || chr(1) || ${queue}) IS NOT NULL END`;
/**
 * What the afterCommit variants (and cancelTimer, a redrive) answer about rows due at `at`:
 * `due`, and for a time not yet due `due_in_ms`; channel-signal.ts payloadFor reads them.
 */
export const dueColumns = (at: string) => `${at} <= now() AS due, CASE WHEN ${at} > now() THEN ${dueInMs(at)} END AS due_in_ms`;
const wake = (channel: number) => `${wakeOrAnnounce(`$${channel}::text`, '$1::text', 'next_attempt_at')} AS woke`;
const DUE = dueColumns('next_attempt_at');
const epochMs = (column: string) => `(extract(epoch FROM ${column}) * 1000)::double precision AS ${column}`;
/** A row's columns but its payload: jsonb as text, times as epoch ms. Decoded by outboxRowFieldsOf (also peekPreviews). */
export const PORTABLE_ROW_FIELDS = `id::text AS id, queue, headers::text AS headers,
  ${['created_at', 'next_attempt_at', 'first_attempt_at', 'last_attempt_at'].map(epochMs).join(', ')},
  attempts_count, deliveries_count, ${epochMs('acquired_at')}, timer_id`;
/** bytea as base64 and jsonb as text: every driver returns text and numbers the same way. Decoded by toOutboxRow (also for peek). */
export const PORTABLE_ROW_COLUMNS = `${PORTABLE_ROW_FIELDS}, encode(payload, 'base64') AS payload`;

/**
 * A keyed publish (orderingKey; `$key` NULL for none) first takes a transaction-scoped advisory
 * lock on (queue, key), held until the caller's transaction ends, and only then draws its id: two
 * transactions publishing under one key are serialized, so the key's ids follow its commit order.
 * Per-key ordering depends on it: the claim runs a key's rows in id order (src/subscriber/sql.ts),
 * and without the lock a transaction that drew a lower id but committed later would make that
 * row appear behind one already running. The lock is a WHERE of the SELECT that feeds the insert:
 * evaluated before the row, and the row's identity default, are formed. Hash collisions serialize
 * two keys' publishes, never reorder them. Unkeyed publishes skip it (the OR short-circuits on NULL).
 */
export const orderingKeyLock = (queue: string, key: string) =>
  `pg_advisory_xact_lock(${orderingKeyLockId(queue, key)}) IS NOT NULL`;

/** The advisory lock's key of (queue, ordering key): the producers' lock, and the one a DLQ redrive tries. */
export const orderingKeyLockId = (queue: string, key: string) =>
  `hashtextextended('txoutbox' || chr(31) || ${queue} || chr(31) || ${key}, 0)`;
const keyLock = (key: number) => `($${key}::text IS NULL OR ${orderingKeyLock('$1::text', `$${key}::text`)})`;

/**
 * A keyed row is due no earlier than the row published (or redriven) before it under its key: it cannot run
 * before that one ended anyway, and a claim's index walk then meets a key's waiting rows only
 * when they could be next (src/subscriber/sql.ts, "waiting rows"). GREATEST ignores the NULL of an
 * unkeyed publish or a key's first row. One backward probe of <t>_key_idx, after the key's lock
 * (a publish that waited for the lock reads with its statement's older snapshot and may miss the
 * row it waited for: then this row is merely due early, and the claim's key test still holds it).
 */
export const keyedDueAt = (t: string, own: string, queue: string, key: string) =>
  `GREATEST(${own}, (SELECT p.next_attempt_at FROM ${t} AS p
    WHERE ${key} IS NOT NULL AND p.queue = ${queue} AND p.ordering_key = ${key} ORDER BY p.id DESC LIMIT 1))`;
const keyedNextAttempt = (t: string, at: number, key: number) => keyedDueAt(t, nextAttempt(at), '$1::text', `$${key}::text`);

/**
 * A keyed row's own due time (`activate_at`), which keyedNextAttempt may have raised to its key's
 * previous row's: a cancelled keyed timer gives the rows behind it this time back (cancelTimer).
 * NULL for an unkeyed row, whose next_attempt_at is its own.
 */
const ownActivation = (at: number, key: number) => `CASE WHEN $${key}::text IS NOT NULL THEN ${nextAttempt(at)} END`;

/**
 * publishBatch's rows, in publish order (`ord`): each one's slice of the payloads ($2, one bytea)
 * and its headers. No JSON to parse per row: the batch used to travel as one JSON text
 * (`json_array_elements`, base64 payloads, headers inside), and parsing it again for each field of
 * each row (`->>`, `->`) was a third of the statement's server CPU (issue 18; BENCHMARKS.md,
 * "Issue 18: batch publish"). Still driver-neutral: one bytea and three texts, split in SQL.
 * string_to_array is cheap and exact here: decimal numbers hold no comma, and JSON.stringify never
 * writes a raw newline (it escapes control characters in strings and adds no whitespace).
 */
const BATCH_ROWS = `ROWS FROM (
    unnest(string_to_array($3::text, ',')::int[]),
    unnest(string_to_array($4::text, ',')::int[]),
    unnest(string_to_array($5::text, E'\\n'))
  ) WITH ORDINALITY AS m(start, length, headers, ord)`;

export function buildProducerSql(names: SchemaNames): ProducerSql {
  const t = names.outbox.sql;
  const insertOne = (
    key: number,
    timer = '',
  ) => `INSERT INTO ${t} (queue, payload, headers, next_attempt_at, ordering_key, activate_at${timer === '' ? '' : ', timer_id'})
  SELECT $1::text, $2::bytea, $3::text::jsonb, ${keyedNextAttempt(t, 4, key)}, $${key}::text, ${ownActivation(4, key)}${timer === '' ? '' : `, ${timer}::text`}
  WHERE ${keyLock(key)}`;
  const single = (returned: string, key: number) => `${insertOne(key)}
  RETURNING id::text AS id, ${returned}`;
  const timer = (returned: string, timerParam: string, key: number) => `${insertOne(key, timerParam)}
  ON CONFLICT (queue, timer_id) WHERE timer_id IS NOT NULL DO NOTHING
  RETURNING id::text AS id, ${returned}`;
  // ONE result row per batch, not one per message: the ids in publish order joined by commas (a
  // bigint's text holds no comma) and whether any row is due, which is all publishBatch needs; the
  // in-transaction variant's pg_notify runs once per batch in that row. A row per message cost the
  // server a result row each and node-postgres a row object each (issue 18, BENCHMARKS.md).
  const batch = (returned: string, key: number) => `WITH inserted AS (
  INSERT INTO ${t} (queue, payload, headers, next_attempt_at, ordering_key, activate_at)
  SELECT $1::text, substring($2::bytea FROM m.start FOR m.length), m.headers::jsonb, ${keyedNextAttempt(t, 6, key)}, $${key}::text, ${ownActivation(6, key)}
  FROM ${BATCH_ROWS}
  WHERE ${keyLock(key)}
  ORDER BY m.ord
  RETURNING id, next_attempt_at)
SELECT string_agg(inserted.id::text, ',' ORDER BY inserted.id) AS ids, ${returned} FROM inserted`;
  return {
    publish: statement('publish', single(wake(6), 7)),
    publishTimer: statement('publish_timer', timer(wake(6), '$7', 8)),
    publishBatch: statement(
      'publish_batch',
      batch(`${wakeOrAnnounce('$8::text', '$1::text', 'min(next_attempt_at)')} AS woke`, 9),
    ),
    afterCommit: {
      publish: statement('publish_quiet', single(DUE, 6)),
      publishTimer: statement('publish_timer_quiet', timer(DUE, '$6', 7)),
      publishBatch: statement('publish_batch_quiet', batch(dueColumns('min(next_attempt_at)'), 8)),
    },
    // The row is picked FOR UPDATE SKIP LOCKED, so a row another transaction holds locked reads as
    // leased and the cancel answers false at once. A `lease: 'row-lock'` batch runs its rows locked
    // without writing a token (subscriber/row-lock-sql.ts): a plain DELETE matched such a row and
    // waited for the batch's COMMIT, up to leaseTtlMs inside the caller's transaction, where a token
    // lease answers false at once (review; test/integration/row-lock-mode.test.ts). Other holders
    // read the same way while they hold it: another cancel of the timer not committed yet, a claim
    // in flight, a row-lock batch's keyed retry that pushed this row (architecture/producer.md).
    // The lock rechecks the filters on the row's newest version, so a row leased after this
    // statement's snapshot is left alone; the DELETE repeats the token test all the same.
    // A keyed timer's cancel gives back the time its key's younger rows inherited from it
    // (keyedNextAttempt): each is due at its own time (activate_at) again, not when the cancelled
    // timer would have fired, nor now() (before: a row published with its own delay behind the
    // timer ran at once). A key's times stay non-decreasing in id order (the claim meets its
    // waiting rows only when they could be next: src/subscriber/sql.ts): the latest own time so
    // far among them, and no earlier than the key's row before the timer. A row of a version
    // before activate_at (NULL) is due now, as it was.
    cancelTimer: statement(
      'cancel_timer',
      `WITH cancelled AS (
  DELETE FROM ${t} WHERE id = (
    SELECT id FROM ${t} WHERE queue = $1::text AND timer_id = $2::text AND acquired_token IS NULL
    FOR UPDATE SKIP LOCKED
  ) AND acquired_token IS NULL
  RETURNING id, queue, ordering_key, next_attempt_at
), inherited AS (
  SELECT w.id, max(COALESCE(w.activate_at, now())) OVER (ORDER BY w.id) AS own_at,
    (SELECT p.next_attempt_at FROM ${t} AS p
      WHERE p.queue = c.queue AND p.ordering_key = c.ordering_key AND p.id < c.id ORDER BY p.id DESC LIMIT 1) AS before_at
  FROM ${t} AS w, cancelled AS c
  WHERE c.ordering_key IS NOT NULL AND c.next_attempt_at > now() AND w.queue = c.queue AND w.ordering_key = c.ordering_key
    AND w.id > c.id AND w.acquired_token IS NULL AND w.next_attempt_at = c.next_attempt_at
), released AS (
  UPDATE ${t} AS w SET next_attempt_at = GREATEST(now(), i.own_at, i.before_at) FROM inherited AS i
  WHERE w.id = i.id AND w.acquired_token IS NULL
  RETURNING w.next_attempt_at
)
SELECT id::text AS id, earliest.* FROM cancelled, (SELECT ${dueColumns('min(next_attempt_at)')} FROM released) AS earliest`,
    ),
    notifyInTransaction: statement('notify_in_transaction', `SELECT pg_notify($1::text, $2::text) IS NOT NULL AS woke`),
    fetchUnprocessed: statement('fetch_unprocessed', `SELECT ${PORTABLE_ROW_COLUMNS} FROM ${t} ORDER BY ${t}.id LIMIT $1::int`),
    fetchUnprocessedQueue: statement(
      'fetch_unprocessed_queue',
      `SELECT ${PORTABLE_ROW_COLUMNS} FROM ${t} WHERE queue = $1::text ORDER BY ${t}.id LIMIT $2::int`,
    ),
  };
}
