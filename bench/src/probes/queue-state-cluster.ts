/**
 * What ten `txoutbox run` supervisors cost the database in queue-state reads (issue 19): every one
 * reading at each scrape (metrics.prometheus.queueStateLeader: false, the behaviour before) against
 * one reader elected by an advisory lock (true, the default). Ten real Runners (no consumers: the
 * supervisor's own Outbox, collector and /metrics) in this process, each scraped over HTTP every
 * `scrapeMs` at staggered offsets, as one Prometheus does; interleaved rounds A B A B.
 *
 *   npm run bench:queue-state-cluster -- [rows=1000000] [windowS=40] [scrapeMs=10000] [rounds=2]
 *
 * Per round: statements/s and their execution time (pg_stat_statements, the probe database only),
 * connections opened, and the PostgreSQL server's CPU (the postmaster and every backend, dead ones
 * included through the postmaster's cutime/cstime), as % of one core. Then, in leader mode, the
 * leader runner is stopped and the probe times how long until another runner exports the queue
 * state (failover as an operator sees it, scrape to scrape).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { Outbox } from '../../../src/index.js';
import { Runner } from '../../../src/runner/runner.js';
import { silentLogger } from '../../../src/util/logger.js';

const rows = Number(process.argv[2] ?? 1_000_000);
const windowS = Number(process.argv[3] ?? 40);
const scrapeMs = Number(process.argv[4] ?? 10_000);
const rounds = Number(process.argv[5] ?? 2);
const RUNNERS = 10;
const QUEUES = 10;
const TICKS = 100; // USER_HZ: /proc/<pid>/stat times are in 1/100 s on Linux

function log(message: string): void {
  process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${message}\n`);
}

const server = await startEmbeddedPostgres({
  settings: { shared_preload_libraries: 'pg_stat_statements', fsync: 'off', synchronous_commit: 'off', max_connections: '200' },
});
const admin = new pg.Pool({ connectionString: server.connectionString, max: 2 });
admin.on('error', () => undefined);

/** The server's CPU in seconds: the postmaster with its reaped children, plus every live child. */
function serverCpuSeconds(postmaster: number): number {
  const fields = (pid: number | string): string[] | undefined => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    } catch {
      return undefined; // exited between the listing and the read
    }
  };
  // After the comm field: [0] state, [1] ppid, … [11] utime, [12] stime, [13] cutime, [14] cstime.
  const own = fields(postmaster);
  let ticks = Number(own?.[11]) + Number(own?.[12]) + Number(own?.[13]) + Number(own?.[14]);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const f = fields(entry);
    if (f?.[1] === String(postmaster)) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / TICKS;
}

async function scrape(runner: Runner): Promise<string> {
  const url = runner.metricsUrl;
  if (url === undefined) throw new Error('metrics are disabled');
  return await (await fetch(url)).text();
}

try {
  await admin.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const dataDir = (await admin.query<{ data_directory: string }>('SHOW data_directory')).rows[0]?.data_directory ?? '';
  const postmaster = Number(readFileSync(`${dataDir}/postmaster.pid`, 'utf8').split('\n')[0]);
  const url = await server.createDatabase('probe');
  const dbid = (await admin.query<{ oid: number }>(`SELECT oid FROM pg_database WHERE datname = 'probe'`)).rows[0]?.oid;
  const setup = new Outbox({ connectionString: url, listen: false });
  await setup.migrate();
  await setup.stop();
  const load = new pg.Client({ connectionString: url });
  await load.connect();
  // As in scripts/measure-queue-state.ts: per queue 90 % ready, 8 % scheduled, 2 % leased; 1 % in the DLQ.
  await load.query(
    `INSERT INTO txoutbox.outbox (queue, payload, created_at, next_attempt_at, acquired_token, acquired_at)
     SELECT 'queue_' || (g % $2), '\\x00', now() - interval '1 hour',
            CASE WHEN (g / $2) % 100 BETWEEN 2 AND 9 THEN now() + interval '1 hour' ELSE now() - (g % 3600) * interval '1 second' END,
            CASE WHEN (g / $2) % 100 < 2 THEN gen_random_uuid() END, CASE WHEN (g / $2) % 100 < 2 THEN now() END
     FROM generate_series(1, $1::bigint) g`,
    [rows, QUEUES],
  );
  await load.query(
    `INSERT INTO txoutbox.outbox_dlq (original_id, queue, payload, created_at, attempts_count, deliveries_count, failure_reason)
     SELECT g, 'queue_' || (g % $2), '\\x00', now(), 1, 1, 'rejected' FROM generate_series(1, $1::bigint) g`,
    [Math.floor(rows / 100), QUEUES],
  );
  await load.query('VACUUM ANALYZE txoutbox.outbox');
  await load.query('VACUUM ANALYZE txoutbox.outbox_dlq');
  await load.end();
  log(
    `${rows.toLocaleString('en')} rows over ${QUEUES} queues; ${RUNNERS} runners, each scraped every ${scrapeMs} ms; ${windowS} s windows`,
  );

  const results: { mode: string; stmts: number; reads: number; execMs: number; connections: number; cpu: number }[] = [];
  for (let round = 0; round < rounds * 2; round += 1) {
    const leader = round % 2 === 1;
    const mode = leader ? 'leader' : 'every runner';
    const runners = await Promise.all(
      Array.from({ length: RUNNERS }, () =>
        Runner.start({
          plans: new Map(),
          databaseUrl: url,
          table: 'txoutbox.outbox',
          dlqTable: 'txoutbox.outbox_dlq',
          metrics: { enabled: true, host: '127.0.0.1', port: 0, prefix: 'txoutbox', queueStateLeader: leader },
          logger: silentLogger,
        }),
      ),
    );
    await Promise.all(runners.map(scrape)); // warm: every pool connected, the leader elected
    await admin.query('SELECT pg_stat_statements_reset()');
    const sessionsBefore = Number(
      (await admin.query<{ n: string }>(`SELECT sessions AS n FROM pg_stat_database WHERE datname = 'probe'`)).rows[0]?.n,
    );
    const cpuBefore = serverCpuSeconds(postmaster);
    const started = performance.now();
    const end = started + windowS * 1000;
    await Promise.all(
      runners.map(async (runner, index) => {
        let next = started + (index * scrapeMs) / RUNNERS;
        while (next < end) {
          await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - performance.now())));
          await scrape(runner);
          next += scrapeMs;
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const cpu = serverCpuSeconds(postmaster) - cpuBefore;
    const sessions =
      Number(
        (await admin.query<{ n: string }>(`SELECT sessions AS n FROM pg_stat_database WHERE datname = 'probe'`)).rows[0]?.n,
      ) - sessionsBefore;
    const { rows: stat } = await admin.query<{ calls: string; ms: number; reads: string }>(
      `SELECT sum(calls) AS calls, sum(total_exec_time) AS ms,
              sum(calls) FILTER (WHERE query LIKE '%WITH RECURSIVE%') AS reads
         FROM pg_stat_statements WHERE dbid = $1`,
      [dbid],
    );
    const s = stat[0];
    const result = {
      mode,
      stmts: Number(s?.calls ?? 0) / seconds,
      reads: Number(s?.reads ?? 0) / seconds,
      execMs: (s?.ms ?? 0) / seconds,
      connections: sessions / seconds,
      cpu: (cpu / seconds) * 100,
    };
    results.push(result);
    log(
      `round ${Math.floor(round / 2) + 1}, ${mode}: ${result.stmts.toFixed(2)} statements/s (${result.reads.toFixed(2)} queue-state reads/s), ` +
        `${result.execMs.toFixed(1)} ms exec/s, ${result.connections.toFixed(2)} connections opened/s, server CPU ${result.cpu.toFixed(2)} % of a core`,
    );

    if (leader && round === rounds * 2 - 1) {
      // Failover: stop the leader; time until another runner's scrape shows the queue state.
      const texts = await Promise.all(runners.map(scrape));
      const leaderIndex = texts.findIndex((t) => /txoutbox_queue_state_leader\{[^}]*\} 1/.test(t));
      const holders = texts.filter((t) => /txoutbox_queue_state_leader\{[^}]*\} 1/.test(t)).length;
      const exporting = texts.filter((t) => /txoutbox_queue_messages\{/.test(t)).length;
      log(`leader mode: ${holders} runner(s) report leader 1, ${exporting} export queue_messages`);
      const old = runners[leaderIndex];
      if (old !== undefined) {
        const stopAt = performance.now();
        await old.stop();
        const rest = runners.filter((r) => r !== old);
        for (;;) {
          const now = await Promise.all(rest.map(scrape));
          if (now.some((t) => /txoutbox_queue_messages\{/.test(t))) break;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        log(
          `failover after a clean stop of the leader: another runner exports the queue state ${((performance.now() - stopAt) / 1000).toFixed(1)} s later`,
        );
        runners.splice(runners.indexOf(old), 1);
      }
    }
    await Promise.all(runners.map((r) => r.stop()));
  }
  const mean = (mode: string, key: 'stmts' | 'reads' | 'execMs' | 'connections' | 'cpu'): number => {
    const of = results.filter((r) => r.mode === mode);
    return of.reduce((sum, r) => sum + r[key], 0) / of.length;
  };
  log('means over rounds:');
  for (const key of ['stmts', 'reads', 'execMs', 'connections', 'cpu'] as const) {
    const a = mean('every runner', key);
    const b = mean('leader', key);
    log(
      `  ${key.padEnd(12)} every runner ${a.toFixed(2).padStart(8)}   leader ${b.toFixed(2).padStart(8)}   ratio ${(a / b).toFixed(1)}×`,
    );
  }
} finally {
  await admin.end();
  await server.stop();
}
