/**
 * What the read of delayed rows' due times costs a consumer's LISTEN (re)connect
 * (subscriber/due-times-sql.ts): the statement's time on one connection, median of `rounds`, on
 * a table holding `future` delayed rows and `ready` due ones spread over `queues` queues, read for
 * every queue (as a consumer subscribed to all of them does), and the plan it ran.
 *
 *   node --import tsx bench/src/probes/due-read.ts [queues, 1000] [future rows, 100000] [ready rows, 100000] [rounds, 21]
 */
import { readDueTimes } from '../../../src/subscriber/due-times-sql.js';
import { percentile } from '../stats.js';
import { startProbeTable } from './probe-table.js';

const queueCount = Number(process.argv[2] ?? 1_000);
const future = Number(process.argv[3] ?? 100_000);
const ready = Number(process.argv[4] ?? 100_000);
const rounds = Number(process.argv[5] ?? 21);

const probe = await startProbeTable();
const { client, names } = probe;
try {
  // Future rows due over the next hour, ready rows due already: each queue gets its share of both.
  await client.query(
    `INSERT INTO probe.outbox (queue, payload, next_attempt_at)
     SELECT 'q' || (n % $1), '\\x00'::bytea, now() + (n % 3600000) * interval '1 millisecond' FROM generate_series(1, $2) n`,
    [queueCount, future],
  );
  await client.query(
    `INSERT INTO probe.outbox (queue, payload) SELECT 'q' || (n % $1), '\\x00'::bytea FROM generate_series(1, $2) n`,
    [queueCount, ready],
  );
  await client.query('VACUUM ANALYZE probe.outbox');
  const queues = Array.from({ length: queueCount }, (_, i) => `q${i}`);
  const times: number[] = [];
  let rows = 0;
  for (let round = 0; round < rounds; round += 1) {
    const started = performance.now();
    const read = await readDueTimes(client, names, queues);
    times.push(performance.now() - started);
    rows = read.reduce((sum, queue) => sum + queue.inMs.length, 0);
  }
  const sorted = [...times].sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      queues: queueCount,
      future,
      ready,
      rowsRead: rows,
      p50: `${percentile(sorted, 50).toFixed(2)} ms`,
      max: `${sorted.at(-1)?.toFixed(2)} ms`,
    }),
  );
} finally {
  await probe.close();
}
