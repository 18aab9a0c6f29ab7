/**
 * How late a row runs after the lease of a process that died runs out: `messages` rows, each leased
 * by a holder that is gone, their leases running out one by one, up to `gap` ms apart, from 1.5 s
 * after the consumer starts. The consumer (default polling, backing off to maxPollIntervalMs, 10 s,
 * while nothing is claimed; LISTEN on) hears of none of them: nobody writes to an expiring lease.
 * Lateness = the handler's start − when the lease ran out (the leases are written relative to a
 * Node timestamp taken before the write, so a lateness is, if anything, overstated by the write).
 * Before idle loops probed for the next lease to run out (subscriber/idle-probe.ts), only polling
 * found these rows.
 *
 *   node --import tsx bench/src/probes/lease-lateness.ts [messages, 12] [gap ms, 2000]
 */

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { Outbox } from '../../../src/index.js';
import { latenessSummary, seededRandom } from '../stats.js';

const messages = Number(process.argv[2] ?? 12);
const gapMs = Number(process.argv[3] ?? 2_000);
const TABLE = 'lease_lateness';
const LEASE_TTL_MS = 30_000;
const FIRST_EXPIRY_MS = 1_500;

const server = await startEmbeddedPostgres();
const consumer = new Outbox({ connectionString: server.connectionString, table: TABLE, poolSize: 4 });
const pool = new pg.Pool({ connectionString: server.connectionString, max: 1 });
try {
  await consumer.migrate();
  const draw = seededRandom(11);
  const expiresInMs: number[] = [];
  for (let n = 0, at = FIRST_EXPIRY_MS; n < messages; n += 1, at += Math.round(draw() * gapMs)) expiresInMs.push(at);
  const ids = await consumer.publishBatch(
    pool,
    'q',
    expiresInMs.map((_, n) => ({ n })),
    { autocommit: true },
  );
  const lateness: number[] = [];
  let expiresAt: number[] = [];
  let done: () => void = () => undefined;
  const allHandled = new Promise<void>((resolve) => {
    done = resolve;
  });
  consumer.subscribe(
    'q',
    (message) => {
      lateness.push(Date.now() - (expiresAt[(message.body as { n: number }).n] ?? Number.NaN));
      if (lateness.length === messages) done();
    },
    { leaseTtlMs: LEASE_TTL_MS },
  );
  // Row n's lease, taken by a holder that died, runs out expiresInMs[n] from now.
  const leasedAt = Date.now();
  await pool.query(
    `UPDATE ${TABLE} AS t SET acquired_token = gen_random_uuid(),
       acquired_at = now() - ($1::double precision - l.in_ms) * interval '1 millisecond'
     FROM unnest($2::bigint[], $3::double precision[]) AS l(id, in_ms)
     WHERE t.id = l.id`,
    [LEASE_TTL_MS, ids, expiresInMs],
  );
  expiresAt = expiresInMs.map((ms) => leasedAt + ms);
  consumer.start();
  await allHandled;
  console.log(JSON.stringify({ messages, gapMs, ...latenessSummary(lateness) }));
} finally {
  await consumer.stop();
  await pool.end();
  await server.stop();
}
