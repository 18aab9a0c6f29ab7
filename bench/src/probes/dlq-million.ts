/**
 * Redrive, purge and retention on a DLQ of 1,000,000 rows (issue 15; BENCHMARKS.md, "DLQ at a
 * million rows"). Each scenario refills the DLQ with one INSERT … SELECT generate_series, then times
 * one outbox.dlq call: rows/s, total time, and each batch's statement latency (from one onBatch to
 * the next: the statement is the only thing in between). A batch is one autocommit statement, so
 * its duration is also the longest any lock it takes (its rows, ROW EXCLUSIVE on the two tables) is
 * held. During the redrives a producer publishes into another queue of the same outbox and a
 * subscriber handles it: their latency shows the redrive does not stop the outbox. Last, a redrive
 * in a child process is SIGKILLed mid-way and run again: every row must end up in the outbox once.
 *
 *   npm run bench:dlq                       # 1,000,000 rows
 *   node --import tsx bench/src/probes/dlq-million.ts 50000   # a quick look
 *
 * Writes bench/results/dlq-million-<time>.json.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { Outbox, REDRIVEN_FROM_HEADER } from '../../../src/index.js';
import { percentile } from '../stats.js';

const TABLE = 'probe';
const DLQ = `${TABLE}_dlq`;
const LIVE_QUEUE = 'live';
/** The producer publishes one message per transaction at most this often (about 200/s). */
const PUBLISH_EVERY_MS = 5;
/** The load runs alone this long first, for a baseline to compare the redrive's numbers with. */
const BASELINE_MS = 5_000;
/** The killed redrive is SIGKILLed once it has reported this many batches. */
const KILL_AFTER_BATCHES = 150;

/** The interrupted redrive: reports each batch on stdout until the parent kills it. */
async function childRedrive(connectionString: string): Promise<void> {
  const outbox = new Outbox({ connectionString, table: TABLE, poolSize: 1 });
  await outbox.dlq.redrive(
    { all: true },
    {
      onBatch: (rows) => {
        process.stdout.write(`${rows}\n`);
      },
    },
  );
  await outbox.stop();
}

interface Latencies {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

function latencies(samples: readonly number[]): Latencies {
  const sorted = [...samples].sort((a, b) => a - b);
  const round = (n: number) => Math.round(n * 100) / 100;
  return {
    count: sorted.length,
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.at(-1) ?? Number.NaN),
  };
}

interface ScenarioResult {
  readonly name: string;
  readonly rows: number;
  readonly batchSize: number;
  readonly seconds: number;
  readonly rowsPerSecond: number;
  readonly batches: Latencies;
  /** Median batch latency over the first and the last tenth of the batches: does it drift? */
  readonly firstTenthP50: number;
  readonly lastTenthP50: number;
  readonly fillSeconds: number;
  readonly load?: { readonly baseline: LoadResult; readonly during: LoadResult };
}

interface LoadResult {
  readonly published: number;
  /** BEGIN … publish … COMMIT, ms. */
  readonly publish: Latencies;
  /** COMMIT returned → the handler runs (LISTEN/NOTIFY wake + claim), ms. */
  readonly commitToHandler: Latencies;
}

async function main(rows: number): Promise<void> {
  const server = await startEmbeddedPostgres();
  const admin = new pg.Pool({ connectionString: server.connectionString, max: 3 });
  admin.on('error', () => undefined);
  const outbox = new Outbox({ connectionString: server.connectionString, table: TABLE, poolSize: 6 });
  const results: ScenarioResult[] = [];
  let interrupted: Record<string, unknown> | undefined;
  const load = new Load(server.connectionString, outbox);
  try {
    await outbox.migrate();
    outbox.subscribe(
      LIVE_QUEUE,
      (message) => {
        load.handled(message.body as { n: number });
      },
      { concurrency: 4 },
    );
    outbox.start();

    const fill = async (): Promise<number> => {
      // TRUNCATE only once the live queue is drained: a row leased by the subscriber must not vanish.
      for (;;) {
        const { rows: live } = await admin.query(`SELECT 1 FROM ${TABLE} WHERE queue = $1 LIMIT 1`, [LIVE_QUEUE]);
        if (live.length === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await admin.query(`TRUNCATE ${TABLE}, ${DLQ}`);
      const started = performance.now();
      // failed_at one minute apart, the newest 30 s ago: rows g ≤ rows/2 are exactly those older than
      // rows/2 minutes, however long (under 30 s) the setup between this statement and the purge takes.
      await admin.query(
        `INSERT INTO ${DLQ} (original_id, queue, payload, headers, created_at, first_attempt_at, last_attempt_at,
           attempts_count, deliveries_count, failure_reason, last_exception, last_exception_type, failed_at)
         SELECT g, 'dead-' || (g % 10), convert_to('{"order":' || g || ',"note":"' || repeat('x', 100) || '"}', 'UTF8'),
           '{"content-type":"application/json","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}',
           now() - interval '1 day', now() - interval '1 day', now() - interval '1 hour', 10, 10, 'max_deliveries',
           'Error: payment service unavailable' || E'\\n    at handle (/app/orders.js:42:11)', 'Error',
           now() - interval '30 seconds' - ($1::int - g) * interval '1 minute'
         FROM generate_series(1, $1::int) AS g`,
        [rows],
      );
      const seconds = (performance.now() - started) / 1000;
      await admin.query(`VACUUM ANALYZE ${DLQ}`);
      await admin.query(`VACUUM ANALYZE ${TABLE}`);
      await admin.query('CHECKPOINT');
      return seconds;
    };

    const scenario = async (
      name: string,
      batchSize: number,
      run: (onBatch: (n: number) => void) => Promise<number>,
      withLoad: boolean,
    ): Promise<void> => {
      const fillSeconds = await fill();
      console.log(`${name}: DLQ filled with ${rows} rows in ${fillSeconds.toFixed(1)} s`);
      const baseline = withLoad ? await load.measure(BASELINE_MS) : undefined;
      const durations: number[] = [];
      if (withLoad) load.begin();
      const started = performance.now();
      let last = started;
      const moved = await run((n) => {
        const now = performance.now();
        if (n > 0) durations.push(now - last);
        last = now;
      });
      const seconds = (performance.now() - started) / 1000;
      const during = withLoad ? await load.end() : undefined;
      const tenth = Math.max(1, Math.floor(durations.length / 10));
      const result: ScenarioResult = {
        name,
        rows: moved,
        batchSize,
        seconds: Math.round(seconds * 100) / 100,
        rowsPerSecond: Math.round(moved / seconds),
        batches: latencies(durations),
        firstTenthP50: latencies(durations.slice(0, tenth)).p50,
        lastTenthP50: latencies(durations.slice(-tenth)).p50,
        fillSeconds: Math.round(fillSeconds * 100) / 100,
        ...(baseline === undefined || during === undefined ? {} : { load: { baseline, during } }),
      };
      results.push(result);
      console.log(JSON.stringify(result));
    };

    const redrive = (batchSize: number) => (onBatch: (n: number) => void) =>
      outbox.dlq.redrive({ all: true }, { batchSize, onBatch }).then((r) => r.redriven);
    // Redriven rows land in queues nobody subscribes to here, due at once, as a real redrive's would.
    await scenario('redrive all, batchSize 1000 (default)', 1_000, redrive(1_000), true);
    await scenario('redrive all, batchSize 10000', 10_000, redrive(10_000), true);
    await scenario(
      'purge all, batchSize 1000 (default)',
      1_000,
      (onBatch) => outbox.dlq.purge({ all: true }, { onBatch }).then((r) => r.purged),
      false,
    );
    await scenario(
      'retention: enforceRetention(rows/2 minutes) deletes the older half',
      1_000,
      (onBatch) => outbox.dlq.enforceRetention(Math.floor(rows / 2) * 60_000, { onBatch }).then((r) => r.purged),
      false,
    );

    interrupted = await killedRedrive(server.connectionString, admin, outbox, rows, fill);
    console.log(JSON.stringify(interrupted));
  } finally {
    await load.close();
    await outbox.stop();
    await admin.end();
    await server.stop();
  }
  const out = fileURLToPath(new URL('../../results/', import.meta.url));
  mkdirSync(out, { recursive: true });
  const file = `${out}dlq-million-${new Date().toISOString().replaceAll(':', '-').slice(0, 19)}.json`;
  writeFileSync(
    file,
    `${JSON.stringify({ rows, cpus: (await import('node:os')).cpus().length, results, interrupted }, null, 2)}\n`,
  );
  console.log(`written: ${file}`);
}

/**
 * A redrive in another process, SIGKILLed after KILL_AFTER_BATCHES batches (possibly inside one),
 * then the same call again here: the outbox must hold every row exactly once.
 */
async function killedRedrive(
  connectionString: string,
  admin: pg.Pool,
  outbox: Outbox,
  rows: number,
  fill: () => Promise<number>,
): Promise<Record<string, unknown>> {
  await fill();
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', connectionString], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let batches = 0;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      resolve();
    }),
  );
  child.stdout.on('data', (chunk: Buffer) => {
    batches += chunk
      .toString('utf8')
      .split('\n')
      .filter((line) => line !== '').length;
    if (batches >= KILL_AFTER_BATCHES) child.kill('SIGKILL');
  });
  await exited;
  // The killed client's last statement may still run on the server: wait until no redrive is.
  for (;;) {
    const { rows: busy } = await admin.query(
      `SELECT 1 FROM pg_stat_activity WHERE query LIKE 'WITH moved AS%' AND state <> 'idle'`,
    );
    if (busy.length === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const counts = async () => {
    const {
      rows: [row],
    } = await admin.query<{ dlq: string; outbox: string; origins: string }>(
      `SELECT (SELECT count(*) FROM ${DLQ}) AS dlq, (SELECT count(*) FROM ${TABLE} WHERE queue <> '${LIVE_QUEUE}') AS outbox,
         (SELECT count(DISTINCT headers ->> '${REDRIVEN_FROM_HEADER}') FROM ${TABLE} WHERE queue <> '${LIVE_QUEUE}') AS origins`,
    );
    return { dlq: Number(row?.dlq), outbox: Number(row?.outbox), distinctOrigins: Number(row?.origins) };
  };
  const afterKill = await counts();
  const started = performance.now();
  const { redriven } = await outbox.dlq.redrive({ all: true });
  const rerunSeconds = Math.round((performance.now() - started) / 10) / 100;
  const final = await counts();
  const exactlyOnce = final.dlq === 0 && final.outbox === rows && final.distinctOrigins === rows;
  if (!exactlyOnce) process.exitCode = 1;
  return {
    name: 'redrive SIGKILLed mid-way, then run again',
    batchesReportedBeforeKill: batches,
    afterKill,
    rerun: { redriven, seconds: rerunSeconds },
    final,
    exactlyOnce,
  };
}

/** The concurrent workload: a producer publishing one row per transaction, and the subscriber's latency. */
class Load {
  readonly #pool: pg.Pool;
  readonly #outbox: Outbox;
  readonly #committedAt = new Map<number, number>();
  /** A handler that ran before its publisher saw COMMIT return (possible, rare): matched after. */
  readonly #handledEarly = new Map<number, number>();
  #publish: number[] = [];
  #toHandler: number[] = [];
  #n = 0;
  #running: Promise<void> | undefined;
  #stop = false;

  constructor(connectionString: string, outbox: Outbox) {
    this.#pool = new pg.Pool({ connectionString, max: 1 });
    this.#pool.on('error', () => undefined);
    this.#outbox = outbox;
  }

  handled(body: { n: number }): void {
    const at = this.#committedAt.get(body.n);
    if (at === undefined) this.#handledEarly.set(body.n, performance.now());
    else this.#toHandler.push(performance.now() - at);
    this.#committedAt.delete(body.n);
  }

  async close(): Promise<void> {
    this.#stop = true;
    await this.#running;
    await this.#pool.end();
  }

  begin(): void {
    this.#publish = [];
    this.#toHandler = [];
    this.#stop = false;
    this.#running = this.#loop();
  }

  async end(): Promise<LoadResult> {
    this.#stop = true;
    await this.#running;
    // The last few published rows get a moment to be handled.
    for (let i = 0; i < 100 && this.#committedAt.size > 0; i += 1) await new Promise((resolve) => setTimeout(resolve, 20));
    return { published: this.#publish.length, publish: latencies(this.#publish), commitToHandler: latencies(this.#toHandler) };
  }

  async measure(ms: number): Promise<LoadResult> {
    this.begin();
    await new Promise((resolve) => setTimeout(resolve, ms));
    return await this.end();
  }

  async #loop(): Promise<void> {
    while (!this.#stop) {
      const n = (this.#n += 1);
      const client = await this.#pool.connect();
      const started = performance.now();
      try {
        await client.query('BEGIN');
        await this.#outbox.publish(client, LIVE_QUEUE, { n });
        await client.query('COMMIT');
      } finally {
        client.release();
      }
      const committed = performance.now();
      const early = this.#handledEarly.get(n);
      if (early === undefined) this.#committedAt.set(n, committed);
      else this.#toHandler.push(Math.max(0, early - committed));
      this.#handledEarly.delete(n);
      this.#publish.push(committed - started);
      const wait = PUBLISH_EVERY_MS - (performance.now() - started);
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

// Last: main() uses the classes above, which do not exist before their declarations run.
if (process.argv[2] === '--child') await childRedrive(process.argv[3] ?? '');
else await main(Number(process.argv[2] ?? 1_000_000));
