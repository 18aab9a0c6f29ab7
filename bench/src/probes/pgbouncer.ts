/**
 * What PgBouncer in transaction mode costs (issue 19): the same work direct and through a real
 * pgbouncer (Debian's, scripts/ensure-pgbouncer.sh; default_pool_size 20) in front of the same
 * embedded PostgreSQL, in interleaved rounds:
 *   - publish: PUBLISHERS concurrent application transactions, one publish() each (BEGIN, INSERT,
 *     COMMIT), on the application's own pool (direct, or through PgBouncer);
 *   - drain: a backlog drained by one subscription (concurrency 16, fetchBatchSize 50), with the
 *     Outbox's own defaults direct (named prepared statements) and with preparedStatements: false
 *     direct (to tell the pooler's hop from the unnamed statements), and through PgBouncer with
 *     transactionPooling (unnamed statements, polling).
 * Median msg/s of the rounds, and the median of each round's ratio to direct in that round (the
 * machine is shared: a paired ratio is steadier than a ratio of medians).
 *
 *   npm run bench:pgbouncer -- [drain rows, default 10000] [publishes, default 2000] [rounds, default 5]
 */
import { readFileSync } from 'node:fs';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { Outbox } from '../../../src/index.js';
import { startPgBouncer } from '../../../test/support/pgbouncer.js';

const rows = Number(process.argv[2] ?? 10_000);
const publishes = Number(process.argv[3] ?? 2_000);
const rounds = Number(process.argv[4] ?? 5);
const TABLE = 'probe.outbox';
const PUBLISHERS = 8;
const CONCURRENCY = 16;
const FETCH_BATCH = 50;

const server = await startEmbeddedPostgres();
// test/support/pgbouncer.ts puts pgbouncer in front of DATABASE_URL's server.
process.env.DATABASE_URL = server.connectionString;
const bouncer = await startPgBouncer({ defaultPoolSize: 20 });
if ('skip' in bouncer) {
  await server.stop();
  throw new Error(`pgbouncer is needed: ${bouncer.skip}`);
}
const bouncerPid = bouncer.pid;
const direct = server.connectionString;
const pooled = bouncer.urlFor(server.connectionString);
const admin = new pg.Pool({ connectionString: direct, max: 2 });

type Route = { readonly name: string; readonly url: string; readonly options: Record<string, unknown> };
const drainRoutes: Route[] = [
  { name: 'direct', url: direct, options: {} },
  { name: 'direct, preparedStatements: false', url: direct, options: { preparedStatements: false } },
  { name: 'PgBouncer (transactionPooling)', url: pooled, options: { transactionPooling: true } },
];
const publishRoutes: Route[] = [
  { name: 'direct', url: direct, options: {} },
  { name: 'PgBouncer (transactionPooling)', url: pooled, options: { transactionPooling: true } },
];

async function drain(route: Route): Promise<Measured> {
  await admin.query(`TRUNCATE ${TABLE}`);
  await admin.query(`INSERT INTO ${TABLE} (queue, payload) SELECT 'q', '\\x00'::bytea FROM generate_series(1, $1::int)`, [rows]);
  await admin.query(`VACUUM ANALYZE ${TABLE}`);
  const outbox = new Outbox({ connectionString: route.url, table: TABLE, listen: false, ...route.options });
  let handled = 0;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  outbox.subscribe(
    'q',
    () => {
      handled += 1;
      if (handled === rows) done();
    },
    { concurrency: CONCURRENCY, fetchBatchSize: FETCH_BATCH, minPollIntervalMs: 10, maxPollIntervalMs: 50 },
  );
  const result = await measured(async () => {
    outbox.start();
    await finished;
    return rows;
  });
  await outbox.stop();
  return result;
}

async function publish(route: Route): Promise<Measured> {
  await admin.query(`TRUNCATE ${TABLE}`);
  const app = new pg.Pool({ connectionString: route.url, max: PUBLISHERS });
  const outbox = new Outbox({ connectionString: route.url, table: TABLE, poolSize: 1, ...route.options });
  let next = 0;
  const publisher = async (): Promise<void> => {
    while (next < publishes) {
      next += 1;
      const client = await app.connect();
      try {
        await client.query('BEGIN');
        await outbox.publish(client, 'p', { n: next });
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    }
  };
  const result = await measured(async () => {
    await Promise.all(Array.from({ length: PUBLISHERS }, publisher));
    return publishes;
  });
  await outbox.stop();
  await app.end();
  return result;
}

/** One run: msg/s, and CPU ms per 1,000 messages of the probe's process (the Outbox, pg, the handlers) and of PgBouncer. */
interface Measured {
  readonly rate: number;
  readonly clientMs: number;
  readonly bouncerMs: number;
}

/** CPU seconds (user + system) of a process so far, from /proc (Linux): PgBouncer's and PostgreSQL's work is not in ours. */
function cpuSecondsOf(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  const fields =
    readFileSync(`/proc/${String(pid)}/stat`, 'utf8')
      .split(') ')[1]
      ?.split(' ') ?? [];
  // utime and stime are fields 14 and 15 of stat(5); index 11 and 12 after the ") " split. USER_HZ is 100 on Linux.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Runs `work` (which returns its message count); msg/s, and CPU ms per 1,000 messages of this process and of PgBouncer. */
async function measured(work: () => Promise<number>): Promise<Measured> {
  const bouncerBefore = cpuSecondsOf(bouncerPid);
  const clientBefore = process.cpuUsage();
  const started = performance.now();
  const messages = await work();
  const seconds = (performance.now() - started) / 1000;
  const client = process.cpuUsage(clientBefore);
  const bouncerSeconds = cpuSecondsOf(bouncerPid) - bouncerBefore;
  return {
    rate: messages / seconds,
    clientMs: ((client.user + client.system) / 1000 / messages) * 1000,
    bouncerMs: ((bouncerSeconds * 1000) / messages) * 1000,
  };
}

const median = (values: readonly number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
try {
  // What architecture/pgbouncer.md asks of a role used through PgBouncer (txoutbox sets no session state there).
  await admin.query(`ALTER ROLE CURRENT_USER SET statement_timeout = '10s'`);
  await admin.query(`ALTER ROLE CURRENT_USER SET plan_cache_mode = force_custom_plan`);
  const setup = new Outbox({ connectionString: direct, table: TABLE, listen: false });
  await setup.migrate();
  await setup.stop();
  const drained = new Map<string, Measured[]>(drainRoutes.map((r) => [r.name, []]));
  const published = new Map<string, Measured[]>(publishRoutes.map((r) => [r.name, []]));
  for (let round = 0; round < rounds; round += 1) {
    const rotate = <T>(list: readonly T[]): T[] => [...list.slice(round % list.length), ...list.slice(0, round % list.length)];
    const line = (work: string, name: string, m: Measured): string =>
      `round ${String(round + 1)}: ${work} ${name}: ${m.rate.toFixed(0)} msg/s, CPU/1k msgs: probe ${m.clientMs.toFixed(0)} ms, PgBouncer ${m.bouncerMs.toFixed(0)} ms`;
    for (const route of rotate(drainRoutes)) {
      const result = await drain(route);
      drained.get(route.name)?.push(result);
      console.error(line('drain', route.name, result));
    }
    for (const route of rotate(publishRoutes)) {
      const result = await publish(route);
      published.get(route.name)?.push(result);
      console.error(line('publish', route.name, result));
    }
  }
  console.log(
    `\nPgBouncer ${bouncer.version}, pool_mode = transaction, default_pool_size 20; median of ${String(rounds)} interleaved rounds\n`,
  );
  console.log(
    '| work | route | msg/s (median) | vs direct, paired by round (median) | per round | probe CPU ms / 1k msgs | PgBouncer CPU ms / 1k msgs |',
  );
  console.log('| --- | --- | ---: | ---: | --- | ---: | ---: |');
  for (const [work, results] of [
    [`drain ${String(rows)} rows (concurrency ${String(CONCURRENCY)}, fetchBatchSize ${String(FETCH_BATCH)})`, drained],
    [`publish ${String(publishes)} × 1 row, ${String(PUBLISHERS)} concurrent transactions`, published],
  ] as const) {
    const base = results.get('direct') ?? [];
    for (const [name, runs] of results) {
      const ratios = runs.map((run, round) => run.rate / (base[round]?.rate ?? Number.NaN));
      const each = ratios.map((ratio) => ratio.toFixed(2)).join(' ');
      const rate = median(runs.map((run) => run.rate));
      const clientMs = median(runs.map((run) => run.clientMs));
      const bouncerMs = median(runs.map((run) => run.bouncerMs));
      console.log(
        `| ${work} | ${name} | ${rate.toFixed(0)} | ${median(ratios).toFixed(2)}× | ${each} | ${clientMs.toFixed(0)} | ${bouncerMs.toFixed(0)} |`,
      );
    }
  }
} finally {
  await admin.end();
  await bouncer.close();
  await server.stop();
}
