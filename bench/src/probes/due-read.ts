/**
 * What the reads of when rows turn claimable cost: `due`, the read of delayed rows' due times on a
 * consumer's LISTEN (re)connect (subscriber/due-times-sql.ts); `next`, an idle loop's probe before
 * a long sleep (subscriber/idle-probe.ts, leases judged by 60 s). The statement's time on one
 * connection, median of `rounds`, on a table holding `future` delayed rows and `ready` due ones
 * spread over `queues` queues (a tenth of the due ones leased within the last minute), read for
 * every queue (as a consumer subscribed to all of them does).
 *
 *   node --import tsx bench/src/probes/due-read.ts [queues, 1000] [future rows, 100000] [ready rows, 100000] [rounds, 21] [due|next, due]
 */
import { readDueTimes } from '../../../src/subscriber/due-times-sql.js';
import { buildSubscriberSql } from '../../../src/subscriber/sql.js';
import { percentile } from '../stats.js';
import { startProbeTable } from './probe-table.js';

const queueCount = Number(process.argv[2] ?? 1_000);
const future = Number(process.argv[3] ?? 100_000);
const ready = Number(process.argv[4] ?? 100_000);
const rounds = Number(process.argv[5] ?? 21);
const read = process.argv[6] ?? 'due';
if (read !== 'due' && read !== 'next') throw new Error(`the read is 'due' or 'next', not ${read}`);

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
  await client.query(
    `UPDATE probe.outbox SET acquired_token = gen_random_uuid(), acquired_at = now() - random() * interval '1 minute'
     WHERE next_attempt_at <= now() AND id % 10 = 0`,
  );
  await client.query('VACUUM ANALYZE probe.outbox');
  const { nextClaimable } = buildSubscriberSql(names);
  const queues = Array.from({ length: queueCount }, (_, i) => `q${i}`);
  const times: number[] = [];
  let rows = 0;
  for (let round = 0; round < rounds; round += 1) {
    const started = performance.now();
    if (read === 'due') {
      const dueTimes = await readDueTimes(client, names, queues);
      rows = dueTimes.reduce((sum, queue) => sum + queue.inMs.length, 0);
    } else rows = (await client.query(nextClaimable.text, [queues, 60_000, '{}'])).rowCount ?? 0;
    times.push(performance.now() - started);
  }
  const sorted = [...times].sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      read,
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
