/**
 * Scrape-time cost of queueStateCollector on a large outbox (architecture/metrics.md quotes it).
 *
 *   node --import tsx scripts/measure-queue-state.ts [rows=10000000] [queues=10] [samples=30]
 *
 * Embedded PostgreSQL (or DATABASE_URL), one table filled with `generate_series`: per queue 90 %
 * ready, 8 % scheduled (due in an hour), 2 % leased, plus 1 % of the rows in the DLQ. Reports,
 * for exactCountLimit 10,000 (the default) and 1,000: the uncached read (the SQL the collector
 * runs per cache window) and a full HTTP scrape of /metrics with the cache expired, p50 and max.
 * Also prints the snapshot statement's EXPLAIN (ANALYZE, BUFFERS) summary.
 */
import { performance } from 'node:perf_hooks';

import pg from 'pg';
import { Registry } from 'prom-client';

import { startEmbeddedPostgres } from '../src/embedded/index.js';
import { Outbox } from '../src/index.js';
import { queueStateCollector, serveMetrics } from '../src/prometheus/index.js';
import { QueueStateReader } from '../src/prometheus/queue-state-reader.js';
import { buildQueueStateSql } from '../src/queues/queue-state-sql.js';

const rows = Number(process.argv[2] ?? 10_000_000);
const queues = Number(process.argv[3] ?? 10);
const samples = Number(process.argv[4] ?? 30);
const CHUNK = 1_000_000;

function log(message: string): void {
  process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${message}\n`);
}

function stats(ms: number[]): string {
  const sorted = [...ms].sort((a, b) => a - b);
  const p50 = sorted[Math.floor((sorted.length - 1) / 2)] ?? NaN;
  return `p50 ${p50.toFixed(1)} ms, max ${(sorted.at(-1) ?? NaN).toFixed(1)} ms (n=${sorted.length})`;
}

async function measure(outbox: Outbox, phase: string, limits: number[]): Promise<void> {
  for (const exactCountLimit of limits) {
    const reader = new QueueStateReader(() => outbox.internals, {
      cacheMs: 1000,
      exactCountLimit,
      maxQueues: 500,
      forgetEmptyAfterMs: 600_000,
      statementTimeoutMs: 30_000,
    });
    await reader.query(); // warm the cache of the buffers, as a running system has
    const reads: number[] = [];
    let result: Awaited<ReturnType<QueueStateReader['query']>> = [];
    for (let i = 0; i < samples; i += 1) {
      const t0 = performance.now();
      result = await reader.query();
      reads.push(performance.now() - t0);
    }
    const first = result[0];
    log(
      `${phase}, exactCountLimit ${exactCountLimit}: uncached read ${stats(reads)}; ${result.length} queues; ` +
        `${first?.queue}: ready ${first?.ready} (estimated ${first?.estimated.ready}), scheduled ${first?.scheduled}, leased ${first?.leased}, dlq ${first?.dlq}, oldest ${first?.oldestReadyAgeSeconds.toFixed(0)} s`,
    );

    const registry = new Registry();
    queueStateCollector(outbox, { registry, exactCountLimit, appName: `${phase.replace(/\W+/g, '_')}_${exactCountLimit}` });
    const server = await serveMetrics({ registry, port: 0 });
    const scrapes: number[] = [];
    const cached: number[] = [];
    for (let i = 0; i < Math.min(samples, 10); i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 1_050)); // the cache window has passed
      let t0 = performance.now();
      await (await fetch(`${server.url}/metrics`)).text();
      scrapes.push(performance.now() - t0);
      t0 = performance.now();
      await (await fetch(`${server.url}/metrics`)).text();
      cached.push(performance.now() - t0);
    }
    await server.close();
    log(`${phase}, exactCountLimit ${exactCountLimit}: HTTP scrape, cache expired ${stats(scrapes)}; cached ${stats(cached)}`);
  }
}

let connectionString = process.env.DATABASE_URL;
let stop: (() => Promise<void>) | undefined;
if (connectionString === undefined || connectionString === '') {
  const server = await startEmbeddedPostgres({
    settings: {
      fsync: 'off',
      synchronous_commit: 'off',
      full_page_writes: 'off',
      max_wal_size: '8GB',
      maintenance_work_mem: '1GB',
    },
  });
  connectionString = server.connectionString;
  stop = () => server.stop();
}
const admin = new pg.Pool({ connectionString, max: 4 });
admin.on('error', (error) => {
  log(`idle admin connection: ${error.message}`);
});
const version = (await admin.query<{ server_version: string }>('SHOW server_version')).rows[0]?.server_version;
const table = `qs_measure_${rows}`;
const outbox = new Outbox({ connectionString, table, listen: false, poolSize: 4 });
try {
  await admin.query(`DROP TABLE IF EXISTS ${table}, ${table}_dlq, txoutbox_migrations`);
  await outbox.migrate();
  log(`PostgreSQL ${version}: inserting ${rows.toLocaleString('en')} rows over ${queues} queues into ${table}`);
  const started = performance.now();
  for (let from = 1; from <= rows; from += CHUNK) {
    const to = Math.min(rows, from + CHUNK - 1);
    // (g / queues) % 100, the row's rank within its queue: 0-1 leased, 2-9 scheduled, the rest ready (due 0-3600 s ago).
    await admin.query(
      `INSERT INTO ${table} (queue, payload, created_at, next_attempt_at, acquired_token, acquired_at)
       SELECT 'queue_' || (g % $3), convert_to(repeat('x', 64), 'UTF8'), now() - interval '1 hour',
              CASE WHEN (g / $3) % 100 BETWEEN 2 AND 9 THEN now() + interval '1 hour' ELSE now() - (g % 3600) * interval '1 second' END,
              CASE WHEN (g / $3) % 100 < 2 THEN gen_random_uuid() END,
              CASE WHEN (g / $3) % 100 < 2 THEN now() END
       FROM generate_series($1::bigint, $2::bigint) g`,
      [from, to, queues],
    );
    log(`  ${to.toLocaleString('en')} rows (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  }
  await admin.query(
    `INSERT INTO ${table}_dlq (original_id, queue, payload, created_at, attempts_count, deliveries_count, failure_reason)
     SELECT g, 'queue_' || (g % $2), '\\x00', now(), 1, 1, 'rejected' FROM generate_series(1, $1::bigint) g`,
    [Math.floor(rows / 100), queues],
  );
  // First without a visibility map (just written, as on a busy table between vacuums: every index
  // entry a count passes costs a heap visit), then after VACUUM (index-only scans).
  await admin.query(`ANALYZE ${table}`);
  await admin.query(`ANALYZE ${table}_dlq`);
  const size = (await admin.query<{ s: string }>(`SELECT pg_size_pretty(pg_total_relation_size($1)) AS s`, [table])).rows[0]?.s;
  log(`loaded in ${((performance.now() - started) / 1000).toFixed(0)} s; table + indexes: ${size}`);
  await measure(outbox, 'before VACUUM (heap visits)', [10_000]);
  await admin.query(`VACUUM ${table}`);
  await admin.query(`VACUUM ${table}_dlq`);
  await measure(outbox, 'after VACUUM (index-only)', [10_000, 1_000]);

  const sql = buildQueueStateSql(outbox.internals.names);
  const plan = await admin.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS) ${sql.snapshot}`, [10_001, 500, []]);
  const lines = plan.rows.map((r) => r['QUERY PLAN']);
  const indexes = [...new Set(lines.flatMap((l) => /using (\S+)/i.exec(l)?.[1] ?? []))];
  const seqScans = lines.filter((l) => l.includes('Seq Scan')).length;
  log(`snapshot plan: indexes ${indexes.join(', ')}; sequential scans: ${seqScans}; ${lines.slice(-2).join('; ')}`);
} finally {
  await outbox.stop();
  await admin.end();
  await stop?.();
}
