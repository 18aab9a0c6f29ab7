/**
 * Would a ready index whose insert point is spread within a queue close W2's gap to raw SQL, and
 * what would it cost the claim? (issue 18, W2, round five; BENCHMARKS.md "Issue 18: batch publish".)
 *
 * Under W2's eight producers every batch appends to the rightmost leaf of `<t>_ready_idx`
 * `(queue, next_attempt_at, id) WHERE acquired_token IS NULL` (one queue, ascending time): round
 * four measured execution per message 53 µs shipped, 31 µs with that index dropped, raw SQL 23 µs.
 * This probe measures scratch copies of the outbox table that differ only in that index (and, for
 * the spread variants, a small `shard` column), in one embedded PostgreSQL (fsync and
 * synchronous_commit on, as W2), with plain `pg` and the exact statement publishBatch sends
 * (captured from Outbox.publishBatch, notify 'after-commit', W2's 100 bodies):
 *
 * `insert`: each round runs every variant once (rotated order), `perPhase` messages, BEGIN; the
 *   batch statement; COMMIT on `producers` connections, tables truncated and a CHECKPOINT first.
 *   Per variant, medians over rounds 2 and later of: msgs/s and the ratio to raw SQL's phase of
 *   the same round; execution µs per message (pg_stat_statements, waits included); the producers'
 *   backend CPU µs per message (/proc/<pid>/schedstat); WAL bytes per message; the share of
 *   samples (pg_stat_activity every 5 ms) in which an active producer waits on
 *   LWLock:BufferContent, and every wait event's share; execution and CPU paired with the shipped
 *   table's phase of the same round. Node's side is left out (the values are built once): this is
 *   the server, so its ratio to raw SQL is not W2's (round five found it near 0.9 with fsync on).
 *   `async`: synchronous_commit off, the statement without the WAL flush.
 *
 * `claim`: per claim variant and rows in flight L, a table holding L + 20,000 rows (W2's rows,
 *   published in autocommit batches over 8 connections), `VACUUM ANALYZE`d, then L rows claimed
 *   and held (leased, at the head). Each round runs `cycles` claims of 100 per variant (rotated
 *   order), acking (deleting) the previous batch on another connection as a subscriber does. Per
 *   claim: round trip, execution (pg_stat_statements) and the claiming backend's CPU. The shipped
 *   claim (claimOne) runs on the shipped index; the spread tables run the same statement with its
 *   ready walk replaced by the merge walk below. At the end, one EXPLAIN (ANALYZE, BUFFERS) per
 *   variant at the largest L (in a rolled-back transaction). FIFO is checked at every phase's
 *   first claim: the rows claimed must be exactly the first 100 ready rows by (next_attempt_at, id).
 *
 * The merge walk (spread tables): one ordered index scan per shard under a MergeAppend (UNION ALL
 * of ordered branches, the order repeated outside), a nested loop to the table by primary key, the
 * row's own predicates on the locked relation, `FOR UPDATE OF o SKIP LOCKED`, `LIMIT $3`: the same
 * rows in the same order as the shipped walk (a merge of per-shard (next_attempt_at, id) orders is
 * the (next_attempt_at, id) order), lazily, locking only the rows it returns. One variant joins by
 * ctid instead (rejected: it loses the index-only scans and sorts each shard).
 *
 * Results and the verdict (no spread variant adopted): BENCHMARKS.md, "Issue 18: batch publish",
 * "Round five: spreading the ready index's insert point".
 *
 *   flock /tmp/txoutbox-bench.lock npm run bench:ready-spread -- insert [rounds, 7] [messages per phase, 20000] [producers, 8] [label regex, '.'] [async]
 *   flock /tmp/txoutbox-bench.lock npm run bench:ready-spread -- claim [rounds, 5] [claims per phase, 20] [L list, 1000,5000] [label regex]
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { Outbox } from '../../../src/index.js';
import { resolveSchemaNames } from '../../../src/schema/schema-names.js';
import { buildSubscriberSql } from '../../../src/subscriber/sql.js';
import * as RAW from '../systems/raw.js';
import { body, quietLogger } from '../systems/system.js';

const mode = process.argv[2] === 'claim' ? 'claim' : 'insert';
const BATCH = 100;
const SHIPPED = '"txoutbox"."outbox"';

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
};
const span = (values: readonly number[], digits: number): string =>
  values.length === 0
    ? '—'
    : `${median(values).toFixed(digits)} (${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)})`;
const push = (map: Map<string, number[]>, key: string, value: number): void => {
  map.set(key, [...(map.get(key) ?? []), value]);
};

/** A scratch table's ready index (or none) and the shard column it needs. */
interface Layout {
  readonly label: string;
  readonly name: string;
  /** The shard column's default, or none. */
  readonly shard?: { readonly count: number; readonly default: string };
  /** The ready index (ON <table> …), or none. */
  readonly ready?: string;
  /** Only the primary key: no lease_idx, timer_uq, key_idx either. */
  readonly pkOnly?: boolean;
  /** The values' header lines replaced by `{}` (the row's width: what the headers JSON costs). */
  readonly emptyHeaders?: boolean;
  /** One partial ready index per shard (`… WHERE shard = k AND acquired_token IS NULL`): each has its own rightmost leaf. */
  readonly indexPerShard?: boolean;
  /** Claim only (its inserts are another layout's): the merge walk joins the row by ctid, not by primary key. */
  readonly ctidJoin?: boolean;
}

const READY_WHERE = 'WHERE acquired_token IS NULL';
const xidShard = (n: number) => ({ count: n, default: `(txid_current() % ${n})::smallint` });
const LAYOUTS: readonly Layout[] = [
  { label: 'shipped', name: 'v_shipped', ready: `(queue, next_attempt_at, id) ${READY_WHERE}` },
  { label: 'no ready_idx (ceiling)', name: 'v_noready' },
  { label: 'primary key only', name: 'v_pkonly', pkOnly: true },
  {
    label: 'shard 8 by xact (txid % 8)',
    name: 'v_x8',
    shard: xidShard(8),
    ready: `(queue, shard, next_attempt_at, id) ${READY_WHERE}`,
  },
  { label: 'shard 4 by xact', name: 'v_x4', shard: xidShard(4), ready: `(queue, shard, next_attempt_at, id) ${READY_WHERE}` },
  { label: 'shard 16 by xact', name: 'v_x16', shard: xidShard(16), ready: `(queue, shard, next_attempt_at, id) ${READY_WHERE}` },
  {
    label: 'shard 8 by xact, an index per shard',
    name: 'v_x8i',
    shard: xidShard(8),
    indexPerShard: true,
  },
  {
    label: 'shard 8 by xact, claim joins by ctid',
    name: 'v_x8t',
    shard: xidShard(8),
    ready: `(queue, shard, next_attempt_at, id) ${READY_WHERE}`,
    ctidJoin: true,
  },
  {
    label: 'shard 8 by backend (pid % 8)',
    name: 'v_p8',
    shard: { count: 8, default: '(pg_backend_pid() % 8)::smallint' },
    ready: `(queue, shard, next_attempt_at, id) ${READY_WHERE}`,
  },
  {
    label: 'shard 8 per row (random)',
    name: 'v_r8',
    shard: { count: 8, default: 'floor(random() * 8)::smallint' },
    ready: `(queue, shard, next_attempt_at, id) ${READY_WHERE}`,
  },
  {
    label: 'ready_idx fillfactor 100',
    name: 'v_ff100',
    ready: `(queue, next_attempt_at, id) WITH (fillfactor = 100) ${READY_WHERE}`,
  },
  {
    label: 'ready_idx deduplicate off',
    name: 'v_nodedup',
    ready: `(queue, next_attempt_at, id) WITH (deduplicate_items = off) ${READY_WHERE}`,
  },
  { label: 'ready_idx on (queue, id)', name: 'v_qid', ready: `(queue, id) ${READY_WHERE}` },
  { label: 'BRIN (next_attempt_at) instead', name: 'v_brin', ready: `USING brin (next_attempt_at)` },
  {
    label: 'shipped, headers {} (row width)',
    name: 'v_nohdr',
    ready: `(queue, next_attempt_at, id) ${READY_WHERE}`,
    emptyHeaders: true,
  },
];

/** The shipped table's columns, constraints and identity; the indexes are added by hand (named below). */
async function createTable(admin: pg.Pool, layout: Layout, table = layout.name): Promise<void> {
  await admin.query(`DROP TABLE IF EXISTS ${table}`);
  await admin.query(`CREATE TABLE ${table} (LIKE ${SHIPPED} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY)`);
  await admin.query(`ALTER TABLE ${table} ADD PRIMARY KEY (id)`);
  if (layout.shard !== undefined) {
    await admin.query(`ALTER TABLE ${table} ADD COLUMN shard smallint NOT NULL DEFAULT ${layout.shard.default}`);
  }
  if (layout.indexPerShard === true && layout.shard !== undefined) {
    for (let k = 0; k < layout.shard.count; k += 1) {
      await admin.query(
        `CREATE INDEX ${table}_ready${k}_idx ON ${table} (queue, next_attempt_at, id) WHERE shard = ${k} AND acquired_token IS NULL`,
      );
    }
  }
  if (layout.ready !== undefined) {
    await admin.query(`CREATE INDEX ${table}_ready_idx ON ${table} ${layout.ready}`);
  }
  if (layout.pkOnly !== true) {
    await admin.query(`CREATE INDEX ${table}_lease_idx ON ${table} (queue, acquired_at) WHERE acquired_token IS NOT NULL`);
    await admin.query(`CREATE UNIQUE INDEX ${table}_timer_uq ON ${table} (queue, timer_id) WHERE timer_id IS NOT NULL`);
    await admin.query(`CREATE INDEX ${table}_key_idx ON ${table} (queue, ordering_key, id) WHERE ordering_key IS NOT NULL`);
  }
}

/**
 * The shipped claimOne with its `ready` CTE replaced by the merge walk over `shards` shards: per
 * shard an ordered scan of (queue, shard, next_attempt_at, id); MergeAppend; primary-key join to
 * the row that is locked; the row's predicates on the locked relation (EvalPlanQual re-checks
 * them on a row another claim leased meanwhile, as it does for the shipped walk's).
 */
function mergeClaim(shipped: string, table: string, shards: number, ctidJoin: boolean): string {
  const start = shipped.indexOf('ready AS (');
  const end = shipped.indexOf('), expired AS (');
  if (start < 0 || end < 0) throw new Error('unexpected shape of claimOne');
  const readyCte = shipped.slice(start, end);
  const where = /WHERE (o\.acquired_token IS NULL[\s\S]*?)\n {2}ORDER BY o\.next_attempt_at, o\.id/.exec(readyCte)?.[1];
  if (where === undefined) throw new Error('unexpected shape of claimOne ready CTE');
  // Each branch ordered in its own parentheses: without them PostgreSQL 18 sorts the Append of
  // every ready row (top-N) instead of merging the per-shard index orders (MergeAppend, lazy).
  const branches = Array.from(
    { length: shards },
    (_, s) =>
      `(SELECT s.id, s.next_attempt_at${ctidJoin ? ', s.ctid AS tid' : ''} FROM ${table} AS s
       WHERE s.acquired_token IS NULL AND s.queue = $1::text AND s.shard = ${s} AND s.next_attempt_at <= now()
       ORDER BY s.next_attempt_at, s.id)`,
  ).join('\n    UNION ALL ');
  const merged = `ready AS (
  SELECT o.id FROM (
    ${branches}
  ) AS c
  JOIN ${table} AS o ON ${ctidJoin ? 'o.ctid = c.tid' : 'o.id = c.id'}
  WHERE ${where}
  ORDER BY c.next_attempt_at, c.id
  LIMIT $3
  FOR UPDATE OF o SKIP LOCKED
`;
  return `${shipped.slice(0, start)}${merged}${shipped.slice(end)}`.replaceAll(SHIPPED, table);
}

/** `insert … async`: synchronous_commit off, so the phases measure the statement, not the WAL flush. */
const asyncCommit = mode === 'insert' && process.argv[7] === 'async';
const server = await startEmbeddedPostgres({
  settings: { shared_preload_libraries: 'pg_stat_statements', ...(asyncCommit ? { synchronous_commit: 'off' } : {}) },
});
const admin = new pg.Pool({ connectionString: server.connectionString, max: 3 });
admin.on('error', () => undefined);
const clients: pg.Client[] = [];
const connect = async (): Promise<pg.Client> => {
  const client = new pg.Client({ connectionString: server.connectionString });
  await client.connect();
  clients.push(client);
  return client;
};
const pidOf = async (client: pg.Client): Promise<number> =>
  (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid ?? NaN;
const cpuNs = (pids: readonly number[]): number =>
  pids.reduce((sum, pid) => sum + Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]), 0);
const walLsn = async (): Promise<string> =>
  (await admin.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l')).rows[0]?.l ?? '0/0';
const walSince = async (lsn: string): Promise<number> =>
  Number((await admin.query<{ d: string }>('SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn) AS d', [lsn])).rows[0]?.d);

try {
  await admin.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const outbox = new Outbox({ connectionString: server.connectionString, dlqTable: false, logger: quietLogger });
  await outbox.migrate();
  // The statement and values publishBatch sends for W2's 100 bodies (after-commit: returns ids and due).
  const captured: { text: string; values: unknown[] }[] = [];
  // An executor that answers at once, in a transaction (as pg's client is to publishBatch).
  const capturing = {
    getTransactionStatus: () => 'T',
    connection: { on: () => undefined, removeListener: () => undefined },
    query: (config: { text: string; values?: unknown[] }) => {
      captured.push({ text: config.text, values: config.values ?? [] });
      return Promise.resolve({ rows: [{ ids: '1', due: false }], rowCount: 1 });
    },
  };
  await outbox.publishBatch(
    capturing,
    'bench',
    Array.from({ length: BATCH }, (_, i) => body(i)),
  );
  await outbox.stop();
  const batch = captured[0];
  if (batch === undefined || !batch.text.includes(SHIPPED)) throw new Error('publishBatch sent no statement on the outbox');
  // $5: each row's headers JSON, one per line.
  const emptyHeaderValues = batch.values.map((value, i) =>
    i === 4 ? Array.from({ length: BATCH }, () => '{}').join('\n') : value,
  );
  const rawValues = [Array.from({ length: BATCH }, (_, i) => JSON.stringify(body(i)))];
  const only = (argument: string | undefined) => (argument === undefined ? undefined : new RegExp(argument));

  if (mode === 'insert') {
    const rounds = Number(process.argv[3] ?? 7);
    const perPhase = Number(process.argv[4] ?? 20_000);
    const producers = Number(process.argv[5] ?? 8);
    const filter = only(process.argv[6]);
    const layouts = LAYOUTS.filter(
      (l) => l.ctidJoin !== true && (filter === undefined || l.label === 'shipped' || filter.test(l.label)),
    );
    for (const layout of layouts) await createTable(admin, layout);
    await admin.query(RAW.CREATE_TABLE);
    const producerClients = await Promise.all(Array.from({ length: producers }, () => connect()));
    const pids = await Promise.all(producerClients.map(pidOf));
    const sampler = await connect();

    interface Phase {
      readonly label: string;
      readonly table: string;
      readonly text: string;
      readonly values: unknown[];
    }
    const phases: Phase[] = [
      {
        label: "raw SQL's INSERT",
        table: 'raw_q',
        text: 'INSERT INTO raw_q (payload) SELECT unnest($1::jsonb[])',
        values: rawValues,
      },
      ...layouts.map((layout) => ({
        label: layout.label,
        table: layout.name,
        text: batch.text.replaceAll(SHIPPED, layout.name),
        values: layout.emptyHeaders === true ? emptyHeaderValues : batch.values,
      })),
    ];
    const rate = new Map<string, number[]>();
    const ratio = new Map<string, number[]>();
    const exec = new Map<string, number[]>();
    const cpu = new Map<string, number[]>();
    const wal = new Map<string, number[]>();
    const bufferContent = new Map<string, number[]>();
    /** Every wait event sampled (null: running, "CPU"), summed over rounds 2 and later. */
    const waits = new Map<string, Map<string, number>>();
    // Paired with the shipped table's phase of the same round: execution and CPU per message.
    const execVsShipped = new Map<string, number[]>();
    const cpuVsShipped = new Map<string, number[]>();
    for (let round = 0; round < rounds; round += 1) {
      const roundExec: Record<string, number> = {};
      const roundCpu: Record<string, number> = {};
      const order = [...phases.slice(round % phases.length), ...phases.slice(0, round % phases.length)];
      const rates: Record<string, number> = {};
      for (const phase of order) {
        await admin.query(`TRUNCATE ${phase.table}`);
        await admin.query('CHECKPOINT');
        await admin.query('SELECT pg_stat_statements_reset()');
        const lsn = await walLsn();
        const cpuBefore = cpuNs(pids);
        let next = 0;
        let running = true;
        let samples = 0;
        let waiting = 0;
        const sampling = (async () => {
          while (running) {
            const { rows } = await sampler.query<{ w: string | null }>(
              `SELECT wait_event_type || ':' || wait_event AS w FROM pg_stat_activity WHERE pid = ANY($1::int[]) AND state = 'active'`,
              [pids],
            );
            samples += rows.length;
            waiting += rows.filter((row) => row.w === 'LWLock:BufferContent').length;
            if (round > 0) {
              const counts = waits.get(phase.label) ?? new Map<string, number>();
              for (const row of rows) counts.set(row.w ?? 'CPU', (counts.get(row.w ?? 'CPU') ?? 0) + 1);
              waits.set(phase.label, counts);
            }
            await new Promise((resolve) => setTimeout(resolve, 5));
          }
        })();
        const name = `ins_${phases.indexOf(phase)}`;
        const started = performance.now();
        await Promise.all(
          producerClients.map(async (client) => {
            while (next < perPhase) {
              next += BATCH;
              await client.query('BEGIN');
              await client.query({ name, text: phase.text, values: phase.values });
              await client.query('COMMIT');
            }
          }),
        );
        const seconds = (performance.now() - started) / 1000;
        running = false;
        await sampling;
        const used = cpuNs(pids) - cpuBefore;
        const walBytes = await walSince(lsn);
        const { rows } = await admin.query<{ ms: number; calls: string }>(
          `SELECT sum(total_exec_time) AS ms, sum(calls) AS calls FROM pg_stat_statements
           WHERE query ILIKE '%INSERT INTO%' AND query NOT ILIKE '%pg_stat_statements%'`,
        );
        const count = Number((await admin.query<{ n: string }>(`SELECT count(*) AS n FROM ${phase.table}`)).rows[0]?.n);
        if (count !== perPhase || Number(rows[0]?.calls) !== perPhase / BATCH)
          throw new Error(`${phase.label}: ${count} rows, ${rows[0]?.calls} statements`);
        rates[phase.label] = perPhase / seconds;
        roundExec[phase.label] = ((rows[0]?.ms ?? NaN) * 1000) / perPhase;
        roundCpu[phase.label] = used / 1000 / perPhase;
        if (round > 0 || rounds === 1) {
          push(rate, phase.label, perPhase / seconds);
          push(exec, phase.label, ((rows[0]?.ms ?? NaN) * 1000) / perPhase);
          push(cpu, phase.label, used / 1000 / perPhase);
          push(wal, phase.label, walBytes / perPhase);
          push(bufferContent, phase.label, samples === 0 ? 0 : (100 * waiting) / samples);
        }
      }
      if (round > 0 || rounds === 1)
        for (const phase of phases) {
          push(ratio, phase.label, (rates[phase.label] ?? NaN) / (rates["raw SQL's INSERT"] ?? NaN));
          push(execVsShipped, phase.label, (roundExec[phase.label] ?? NaN) / (roundExec.shipped ?? NaN));
          push(cpuVsShipped, phase.label, (roundCpu[phase.label] ?? NaN) / (roundCpu.shipped ?? NaN));
        }
    }
    console.log(
      `W2-shaped inserts: ${perPhase} messages per phase, ${BATCH} per transaction (BEGIN; publishBatch's statement; COMMIT), ${producers} producer(s), fsync on, synchronous_commit ${asyncCommit ? 'off' : 'on'}, medians of rounds 2–${rounds} (min–max):`,
    );
    console.log(
      `  ${'variant'.padEnd(32)} ${'msgs/s'.padStart(24)} ${'÷ raw'.padStart(18)} ${'exec µs/msg'.padStart(20)} ${'backend CPU µs/msg'.padStart(20)} ${'WAL B/msg'.padStart(10)} ${'BufferContent %'.padStart(22)} ${'exec ÷ shipped'.padStart(15)} ${'CPU ÷ shipped'.padStart(14)}`,
    );
    for (const phase of phases) {
      const l = phase.label;
      console.log(
        `  ${l.padEnd(32)} ${span(rate.get(l) ?? [], 0).padStart(24)} ${span(ratio.get(l) ?? [], 2).padStart(18)} ${span(exec.get(l) ?? [], 1).padStart(20)} ${span(cpu.get(l) ?? [], 2).padStart(20)} ${median(
          wal.get(l) ?? [],
        )
          .toFixed(0)
          .padStart(10)} ${span(bufferContent.get(l) ?? [], 0).padStart(22)} ${median(execVsShipped.get(l) ?? [])
          .toFixed(2)
          .padStart(15)} ${median(cpuVsShipped.get(l) ?? [])
          .toFixed(2)
          .padStart(14)}`,
      );
    }
    console.log('Active producers by wait event (share of samples, rounds 2 and later; CPU = not waiting):');
    for (const phase of phases) {
      const counts = [...(waits.get(phase.label) ?? new Map<string, number>()).entries()].sort((x, y) => y[1] - x[1]);
      const total = counts.reduce((sum, [, n]) => sum + n, 0);
      const top = counts.slice(0, 6).map(([w, n]) => `${w} ${((100 * n) / total).toFixed(0)} %`);
      console.log(`  ${phase.label.padEnd(32)} ${top.join(', ')}`);
    }
  } else {
    const rounds = Number(process.argv[3] ?? 5);
    const cycles = Number(process.argv[4] ?? 20);
    const inFlight = (process.argv[5] ?? '1000,5000').split(',').map(Number);
    const filter = only(process.argv[6]);
    const BACKLOG = 20_000;
    const shipped = buildSubscriberSql(resolveSchemaNames('txoutbox.outbox', false)).claimOne.text;
    const claimLayouts = LAYOUTS.filter(
      (l) =>
        l.label === 'shipped' ||
        (l.shard !== undefined && (filter === undefined || filter.test(l.label))) ||
        (filter !== undefined && l.ready !== undefined && filter.test(l.label)),
    );
    const fillers = await Promise.all(Array.from({ length: 8 }, () => connect()));
    const claimer = await connect();
    const acker = await connect();
    await claimer.query('SET plan_cache_mode = force_custom_plan');
    const claimerPid = await pidOf(claimer);

    interface Case {
      readonly label: string;
      readonly table: string;
      readonly held: number;
      readonly text: string;
      previous: string[];
    }
    const cases: Case[] = [];
    for (const held of inFlight) {
      for (const layout of claimLayouts) {
        const table = `${layout.name}_l${held}`;
        await createTable(admin, layout, table);
        const insert = batch.text.replaceAll(SHIPPED, table);
        let next = 0;
        await Promise.all(
          fillers.map(async (client) => {
            while (next < BACKLOG + held) {
              next += BATCH;
              await client.query({ name: `fill_${table}`, text: insert, values: batch.values });
            }
          }),
        );
        await admin.query(`VACUUM ANALYZE ${table}`);
        const text =
          layout.shard === undefined
            ? shipped.replaceAll(SHIPPED, table)
            : mergeClaim(shipped, table, layout.shard.count, layout.ctidJoin === true);
        cases.push({ label: layout.label, table, held, text, previous: [] });
      }
    }
    const claim = (c: Case, limit = BATCH) =>
      claimer.query<{ id: string }>({
        name: `claim_${c.table}`,
        text: c.text,
        values: ['bench', 60_000, limit, randomUUID(), []],
      });
    // L rows leased and held at the head (handlers still running).
    for (const c of cases) for (let held = 0; held < c.held; held += BATCH) await claim(c);

    const roundTrip = new Map<string, number[]>();
    const exec = new Map<string, number[]>();
    const cpu = new Map<string, number[]>();
    const fifo = new Map<string, string>();
    for (let round = 0; round < rounds; round += 1) {
      const order = [...cases.slice(round % cases.length), ...cases.slice(0, round % cases.length)];
      for (const c of order) {
        const key = `${c.label} @${c.held}`;
        // FIFO: the next claim must take exactly the first 100 ready rows by (next_attempt_at, id).
        const { rows: expected } = await admin.query<{ id: string }>(
          `SELECT id::text AS id FROM ${c.table} WHERE acquired_token IS NULL AND queue = 'bench' AND next_attempt_at <= now()
           ORDER BY next_attempt_at, ${c.table}.id LIMIT ${BATCH}`,
        );
        await admin.query('SELECT pg_stat_statements_reset()');
        const cpuBefore = cpuNs([claimerPid]);
        let ms = 0;
        for (let cycle = 0; cycle < cycles; cycle += 1) {
          const started = performance.now();
          const { rows } = await claim(c);
          ms += performance.now() - started;
          if (rows.length !== BATCH) throw new Error(`${key}: claimed ${rows.length}`);
          if (cycle === 0) {
            const same = rows.map((r) => r.id).join() === expected.map((r) => r.id).join();
            if (!same) {
              fifo.set(key, 'NOT exact');
              const got = rows.map((r) => r.id);
              const want = expected.map((r) => r.id);
              console.error(
                `${key}: claimed ${got.filter((id) => !want.includes(id)).join(' ')} instead of ${want.filter((id) => !got.includes(id)).join(' ')}`,
              );
            } else if (!fifo.has(key)) fifo.set(key, 'exact');
          }
          if (c.previous.length > 0) await acker.query(`DELETE FROM ${c.table} WHERE id = ANY($1::bigint[])`, [c.previous]);
          c.previous = rows.map((r) => r.id);
        }
        const used = cpuNs([claimerPid]) - cpuBefore;
        const { rows } = await admin.query<{ ms: number; calls: string }>(
          `SELECT sum(total_exec_time) AS ms, sum(calls) AS calls FROM pg_stat_statements WHERE query ILIKE '%acquired_token = $4%'`,
        );
        if (Number(rows[0]?.calls) !== cycles) throw new Error(`${key}: ${rows[0]?.calls} claims counted`);
        if (round > 0 || rounds === 1) {
          push(roundTrip, key, (ms * 1000) / (cycles * BATCH));
          push(exec, key, ((rows[0]?.ms ?? NaN) * 1000) / (cycles * BATCH));
          push(cpu, key, used / 1000 / (cycles * BATCH));
        }
      }
    }
    console.log(
      `Claims of ${BATCH} (claimOne's statement; spread tables: its ready walk as a merge), ${BACKLOG} ready rows + L held at the head, ${cycles} claims per phase, medians of rounds 2–${rounds} (min–max), µs per claimed message:`,
    );
    console.log(
      `  ${'variant @L'.padEnd(36)} ${'round trip'.padStart(20)} ${'exec'.padStart(20)} ${'backend CPU'.padStart(20)} ${'÷ shipped (exec)'.padStart(17)} ${'÷ shipped (CPU)'.padStart(16)}  FIFO`,
    );
    for (const c of cases) {
      const key = `${c.label} @${c.held}`;
      const base = median(exec.get(`shipped @${c.held}`) ?? []);
      const baseCpu = median(cpu.get(`shipped @${c.held}`) ?? []);
      console.log(
        `  ${key.padEnd(36)} ${span(roundTrip.get(key) ?? [], 2).padStart(20)} ${span(exec.get(key) ?? [], 2).padStart(20)} ${span(cpu.get(key) ?? [], 2).padStart(20)} ${(median(exec.get(key) ?? []) / base).toFixed(2).padStart(17)} ${(median(cpu.get(key) ?? []) / baseCpu).toFixed(2).padStart(16)}  ${fifo.get(key) ?? '?'}`,
      );
    }
    const largest = Math.max(...inFlight);
    for (const c of cases.filter((x) => x.held === largest)) {
      await claimer.query('BEGIN');
      const { rows } = await claimer.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON) ${c.text.replaceAll('$1::text', "'bench'::text")}`
          .replaceAll('$2::double precision', '60000::double precision')
          .replaceAll('$3', '100')
          .replaceAll('$4::uuid', `'${randomUUID()}'::uuid`)
          .replaceAll('$5::bigint[]', `'{}'::bigint[]`),
      );
      await claimer.query('ROLLBACK');
      console.log(`\nEXPLAIN (ANALYZE, BUFFERS) ${c.label} @${c.held}:`);
      for (const row of rows) console.log(`  ${row['QUERY PLAN']}`);
    }
  }
} finally {
  for (const client of clients) await client.end();
  await admin.end();
  await server.stop();
}
