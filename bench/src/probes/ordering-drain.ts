/**
 * What per-key ordering costs a drain (issue 16): the same backlog drained by one subscription at
 * concurrency 16, unkeyed, spread over 1,000 ordering keys (published round-robin, so every key
 * has a row in each stretch of the table), and unkeyed again behind one stuck key (its oldest row
 * scheduled an hour out, 10,000 of its rows waiting: every claim walks past them). Rounds are
 * interleaved; each drain starts from the same freshly inserted, analyzed table.
 *
 *   npm run bench:ordering -- [rows, default 20000] [rounds, default 3]
 */
import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { ConstantRetry, Outbox } from '../../../src/index.js';

const rows = Number(process.argv[2] ?? 20_000);
const rounds = Number(process.argv[3] ?? 3);
const KEYS = 1_000;
const STUCK_ROWS = 10_000;
const CONCURRENCY = 16;
const FETCH_BATCH = 50;
const TABLE = 'probe.outbox';

interface Scenario {
  readonly name: string;
  /** Fills the table; returns how many rows the drain must handle. */
  fill(client: pg.PoolClient): Promise<number>;
  /** Runs on an Outbox of its own after the fill, before the clock starts. */
  before?(outbox: Outbox): Promise<void>;
}

const insert = (keyExpression: string) =>
  `INSERT INTO ${TABLE} (queue, payload, ordering_key) SELECT 'q', '\\x00'::bytea, ${keyExpression} FROM generate_series(1, $1::int) AS n`;

const scenarios: Scenario[] = [
  {
    name: 'unkeyed',
    async fill(client) {
      await client.query(insert('NULL'), [rows]);
      return rows;
    },
  },
  {
    name: `${String(KEYS)} keys, round-robin`,
    async fill(client) {
      await client.query(insert(`'key-' || (n % ${String(KEYS)})`), [rows]);
      return rows;
    },
  },
  {
    name: `unkeyed behind a stuck key (${String(STUCK_ROWS)} waiting rows)`,
    async fill(client) {
      await client.query(insert(`'stuck'`), [STUCK_ROWS]);
      await client.query(insert('NULL'), [rows]);
      return rows;
    },
    // The key gets stuck the way it does in production: its oldest row fails, and its retry is an
    // hour away (the retry moves the key's waiting rows to that hour too: subscriber/sql.ts).
    async before(outbox) {
      let failed!: () => void;
      const stuck = new Promise<void>((resolve) => {
        failed = resolve;
      });
      outbox.subscribe(
        'q',
        (message) => {
          if (message.orderingKey === 'stuck') {
            setImmediate(failed);
            throw new Error('stuck');
          }
          throw new Error('the setup claims only the stuck row');
        },
        { name: 'stuck-setup', concurrency: 1, fetchBatchSize: 1, retry: new ConstantRetry({ delayMs: 3_600_000 }) },
      );
      outbox.start();
      await stuck;
      await outbox.stop();
    },
  },
];

const server = await startEmbeddedPostgres();
const pool = new pg.Pool({ connectionString: server.connectionString, max: 8 });
try {
  const setup = new Outbox({ pool, table: TABLE });
  await setup.migrate();
  await setup.stop();
  const results = new Map<string, number[]>(scenarios.map((s) => [s.name, []]));
  for (let round = 0; round < rounds; round += 1) {
    const order = [...scenarios.slice(round % scenarios.length), ...scenarios.slice(0, round % scenarios.length)];
    for (const scenario of order) {
      const client = await pool.connect();
      let expected: number;
      try {
        await client.query(`TRUNCATE ${TABLE}`);
        expected = await scenario.fill(client);
      } finally {
        client.release();
      }
      if (scenario.before !== undefined) await scenario.before(new Outbox({ pool, table: TABLE, listen: false }));
      await pool.query(`VACUUM ANALYZE ${TABLE}`);
      const outbox = new Outbox({ pool, table: TABLE, listen: false });
      let handled = 0;
      let resolveDone: () => void = () => undefined;
      const done = new Promise<void>((resolve) => {
        resolveDone = resolve;
      });
      outbox.subscribe(
        'q',
        () => {
          handled += 1;
          if (handled === expected) resolveDone();
        },
        { concurrency: CONCURRENCY, fetchBatchSize: FETCH_BATCH, minPollIntervalMs: 10, maxPollIntervalMs: 50 },
      );
      const started = performance.now();
      outbox.start();
      await done;
      const seconds = (performance.now() - started) / 1000;
      await outbox.stop();
      results.get(scenario.name)?.push(expected / seconds);
      console.error(`round ${String(round + 1)}: ${scenario.name}: ${(expected / seconds).toFixed(0)} msg/s`);
    }
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
  const base = median(results.get('unkeyed') ?? []);
  console.log(
    `\n${String(rows)} rows per drain, concurrency ${String(CONCURRENCY)}, fetchBatchSize ${String(FETCH_BATCH)}, median of ${String(rounds)} interleaved rounds\n`,
  );
  console.log('| drain | msg/s | vs unkeyed |');
  console.log('| --- | ---: | ---: |');
  for (const [name, values] of results) {
    const value = median(values);
    console.log(`| ${name} | ${value.toFixed(0)} | ${(value / base).toFixed(2)}× |`);
  }
} finally {
  await pool.end();
  await server.stop();
}
