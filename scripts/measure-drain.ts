/**
 * Quick drain measurement (the benchmark harness, issue #6, makes it permanent):
 * preload N messages, drain them with a no-op handler, report msgs/s and statements per message
 * (pg_stat_statements, excluding its own queries). Embedded PostgreSQL with fsync on.
 *   node --import tsx scripts/measure-drain.ts [messages=20000] [fetchBatchSize=100]
 */
import pg from 'pg';

import { startEmbeddedPostgres } from '../src/embedded/index.js';
import { Outbox } from '../src/index.js';

const messages = Number(process.argv[2] ?? 20_000);
const fetchBatchSize = Number(process.argv[3] ?? 100);
const server = await startEmbeddedPostgres();
const admin = new pg.Pool({ connectionString: server.connectionString, max: 2 });
await admin.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');

for (const concurrency of [1, 4, 16]) {
  const table = `drain_c${concurrency}`;
  const outbox = new Outbox({ connectionString: server.connectionString, table, dlqTable: false, listen: false });
  await outbox.migrate();
  const client = await admin.connect();
  await client.query('BEGIN');
  for (let i = 0; i < messages; i += 5000) {
    await outbox.publishBatch(
      client,
      'bench',
      Array.from({ length: Math.min(5000, messages - i) }, (_, n) => ({ n: i + n, pad: 'x'.repeat(200) })),
    );
  }
  await client.query('COMMIT');
  client.release();
  await admin.query(`ANALYZE ${table}`);
  await admin.query('SELECT pg_stat_statements_reset()');
  let handled = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  const started = performance.now();
  outbox.subscribe(
    'bench',
    () => {
      handled += 1;
      if (handled === messages) resolveDone();
    },
    { concurrency, fetchBatchSize, minPollIntervalMs: 10, maxPollIntervalMs: 50 },
  );
  outbox.start();
  await done;
  await outbox.stop();
  const seconds = (performance.now() - started) / 1000;
  const { rows } = await admin.query<{ calls: string; query: string }>(
    `SELECT sum(calls)::text AS calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 30) AS query FROM pg_stat_statements
     WHERE query NOT ILIKE '%pg_stat_statements%' AND query NOT ILIKE 'ANALYZE%' GROUP BY 2 ORDER BY 1 DESC`,
  );
  const total = rows.reduce((sum, r) => sum + Number(r.calls), 0);
  const left = (await admin.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`)).rows[0]?.n;
  console.log(
    `concurrency ${String(concurrency).padStart(2)} fetchBatchSize ${fetchBatchSize}: ${Math.round(messages / seconds)} msgs/s, ` +
      `${(total / messages).toFixed(4)} statements/msg (${rows.map((r) => `${r.query.split(' ').slice(0, 2).join(' ')}…×${r.calls}`).join(', ')}), left ${left}`,
  );
}
await admin.end();
await server.stop();
