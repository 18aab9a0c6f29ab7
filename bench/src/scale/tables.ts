/**
 * What the scale workloads do to the tables directly: load a large backlog in one statement
 * (publishing a million rows through the library would take longer than draining them and measure
 * nothing new), and read what the statistics say about a table (sizes, dead tuples, vacuums) and
 * about one statement (pg_stat_statements).
 */
import pg from 'pg';

import { body } from '../systems/system.js';

/** The payload every system carries (systems/system.ts `body(n)`), built by PostgreSQL for n = g. */
const PAD = body(0).pad;
const PAYLOAD_SQL = `'{"n":' || g || ',"pad":"${PAD}"}'`;

export const OUTBOX = 'txoutbox.outbox';
export const OUTBOX_DLQ = 'txoutbox.outbox_dlq';

export async function withClient<T>(url: string, run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

export interface Backlog {
  /** Ready rows, body n = 0 … ready-1, spread round-robin over `queues`. */
  readonly ready: number;
  readonly queues: readonly string[];
  /** Rows of the first queue due in a day (body n past the ready ones): claims must not see them. */
  readonly scheduled?: number;
  /** Rows in <t>_dlq: a table claims never read. */
  readonly dlq?: number;
}

/**
 * Fills txoutbox's table as `publish` would have: the headers of a row published by the library
 * (`sampleHeaders`), the bench's payload. Then VACUUM ANALYZE and a CHECKPOINT, so every backlog
 * starts measured with a visibility map, statistics and clean buffers (autovacuum's insert
 * threshold would otherwise start a vacuum of the whole load during the measurement).
 */
export async function loadOutboxBacklog(url: string, backlog: Backlog, sampleHeaders: unknown): Promise<number> {
  const started = performance.now();
  await withClient(url, async (client) => {
    const headers = JSON.stringify(sampleHeaders);
    await client.query(
      `INSERT INTO ${OUTBOX} (queue, payload, headers)
       SELECT ($2::text[])[1 + g % array_length($2::text[], 1)], convert_to(${PAYLOAD_SQL}, 'UTF8'), $3::jsonb
       FROM generate_series(0, $1::int - 1) AS g`,
      [backlog.ready, backlog.queues, headers],
    );
    if ((backlog.scheduled ?? 0) > 0) {
      await client.query(
        `INSERT INTO ${OUTBOX} (queue, payload, headers, next_attempt_at)
         SELECT $2::text, convert_to(${PAYLOAD_SQL}, 'UTF8'), $3::jsonb, now() + interval '1 day'
         FROM generate_series($4::int, $4::int + $1::int - 1) AS g`,
        [backlog.scheduled, backlog.queues[0], headers, backlog.ready],
      );
    }
    if ((backlog.dlq ?? 0) > 0) {
      await client.query(
        `INSERT INTO ${OUTBOX_DLQ} (original_id, queue, payload, headers, created_at, attempts_count, deliveries_count,
           failure_reason, last_exception, last_exception_type)
         SELECT g, $2::text, convert_to(${PAYLOAD_SQL}, 'UTF8'), $3::jsonb, now() - interval '1 hour', 10, 10,
           'max_deliveries', 'Error: downstream unavailable', 'Error'
         FROM generate_series(1, $1::int) AS g`,
        [backlog.dlq, backlog.queues[0], headers],
      );
    }
    await client.query(`VACUUM ANALYZE ${OUTBOX}`);
    await client.query(`VACUUM ANALYZE ${OUTBOX_DLQ}`);
    await client.query('CHECKPOINT');
  });
  return (performance.now() - started) / 1000;
}

/** raw SQL's table (systems/raw.ts) with `rows` ready rows, the same payload. */
export async function loadRawBacklog(url: string, rows: number): Promise<number> {
  const started = performance.now();
  await withClient(url, async (client) => {
    await client.query(`INSERT INTO raw_q (payload) SELECT (${PAYLOAD_SQL})::jsonb FROM generate_series(0, $1::int - 1) AS g`, [
      rows,
    ]);
    await client.query('VACUUM ANALYZE raw_q');
    await client.query('CHECKPOINT');
  });
  return (performance.now() - started) / 1000;
}

/** The claim statement of each system, as pg_stat_statements normalises it. */
export const CLAIM_PATTERNS = {
  // claimOne starts `WITH ready AS (`, claimMany `WITH ready_heads AS (` (claim-many-sql.ts).
  txoutbox: 'WITH ready%',
  raw: 'SELECT id, payload FROM raw_q%',
} as const;

export interface StatementTotals {
  readonly calls: number;
  readonly rows: number;
  /** Execution time (total_exec_time). */
  readonly totalMs: number;
  /** Planning time (total_plan_time): 0 unless pg_stat_statements.track_planning is on. */
  readonly planMs: number;
}

/**
 * The generic-plan prelude a lease-mode claim over several queues is sent after (src/util/generic-plan.ts
 * GENERIC_PLAN_PRELUDE): a statement of its own in pg_stat_statements (which normalises its
 * constants), part of the claim's cost.
 */
export const CLAIM_PRELUDE_PATTERN = 'SELECT set_config($1, $2, $3), set_config($4, $5, $6), set_config($7, $8, $9)';

/** Summed pg_stat_statements counters of one database's statements matching `pattern` (LIKE). */
export async function statementTotals(admin: pg.Pool, database: string, pattern: string): Promise<StatementTotals> {
  const { rows } = await admin.query<{ calls: string; rows: string; ms: number; plan_ms: number }>(
    `SELECT coalesce(sum(s.calls), 0)::text AS calls, coalesce(sum(s.rows), 0)::text AS rows, coalesce(sum(s.total_exec_time), 0)::float8 AS ms,
            coalesce(sum(s.total_plan_time), 0)::float8 AS plan_ms
     FROM pg_stat_statements AS s JOIN pg_database AS d ON d.oid = s.dbid
     WHERE d.datname = $1 AND s.query LIKE $2`,
    [database, pattern],
  );
  const row = rows[0];
  return { calls: Number(row?.calls ?? 0), rows: Number(row?.rows ?? 0), totalMs: row?.ms ?? 0, planMs: row?.plan_ms ?? 0 };
}

export function minus(after: StatementTotals, before: StatementTotals): StatementTotals {
  return {
    calls: after.calls - before.calls,
    rows: after.rows - before.rows,
    totalMs: after.totalMs - before.totalMs,
    planMs: after.planMs - before.planMs,
  };
}

export interface TableHealth {
  readonly tableBytes: number;
  /** Each index of the table, by name. */
  readonly indexBytes: Readonly<Record<string, number>>;
  readonly liveTuples: number;
  readonly deadTuples: number;
  readonly autovacuums: number;
  readonly autoanalyzes: number;
}

/** Heap size, each index's size, and the cumulative statistics' tuple and autovacuum counts. */
export async function tableHealth(client: pg.Client | pg.Pool, table: string): Promise<TableHealth> {
  const [schema, name] = table.split('.');
  const { rows } = await client.query<{
    heap: string;
    live: string;
    dead: string;
    av: string;
    aa: string;
    indexes: Record<string, number> | null;
  }>(
    `SELECT pg_relation_size(c.oid)::text AS heap, s.n_live_tup::text AS live, s.n_dead_tup::text AS dead,
       s.autovacuum_count::text AS av, s.autoanalyze_count::text AS aa,
       (SELECT jsonb_object_agg(i.indexrelname, pg_relation_size(i.indexrelid)) FROM pg_stat_user_indexes AS i
        WHERE i.relid = c.oid) AS indexes
     FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace JOIN pg_stat_user_tables AS s ON s.relid = c.oid
     WHERE n.nspname = $1 AND c.relname = $2`,
    [schema, name],
  );
  const row = rows[0];
  if (row === undefined) throw new Error(`no table ${table}`);
  return {
    tableBytes: Number(row.heap),
    indexBytes: row.indexes ?? {},
    liveTuples: Number(row.live),
    deadTuples: Number(row.dead),
    autovacuums: Number(row.av),
    autoanalyzes: Number(row.aa),
  };
}
