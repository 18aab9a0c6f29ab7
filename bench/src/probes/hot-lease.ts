/**
 * What a HOT-able lease would buy, and what it would cost (BENCHMARKS.md, "W3 — the lease is a
 * write"). The shipped schema's lease UPDATE changes `acquired_token`, a column in both partial
 * indexes' predicates, so every claim writes a new row version with new index entries. A schema
 * with one non-partial index on (queue, next_attempt_at, id), no `lease_idx` and `fillfactor` 50
 * lets PostgreSQL update the lease in place (HOT), but every claim then walks past the rows still
 * leased at the head of the queue. This measures one claim of 100 rows in both, with L rows
 * leased and held (handlers still running), over 100 claim + delete cycles.
 *
 *   node --import tsx bench/src/probes/hot-lease.ts
 */
import { randomUUID } from 'node:crypto';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { Outbox } from '../../../src/index.js';
import { resolveSchemaNames } from '../../../src/schema/schema-names.js';
import { buildSubscriberSql } from '../../../src/subscriber/sql.js';

const IN_FLIGHT = [0, 200, 1000, 5000];
const BACKLOG = 20_000;
const CYCLES = 100;
const BATCH = 100;

type Variant = 'shipped' | 'hot';

/** The HOT-able claim: one index walk; expired leases are found on the same walk (they sit at the head). */
function hotClaimText(table: string): string {
  return `UPDATE ${table} t SET acquired_token = $2::uuid, acquired_at = now(), deliveries_count = t.deliveries_count + 1
WHERE t.id = ANY(ARRAY(
  SELECT id FROM ${table}
  WHERE queue = 'bench' AND next_attempt_at <= now() AND (acquired_token IS NULL OR acquired_at < now() - interval '60 s')
  ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED))
RETURNING t.id::text AS id`;
}

async function prepare(server: { connectionString: string }, admin: pg.Pool, table: string, variant: Variant, rows: number) {
  const outbox = new Outbox({ connectionString: server.connectionString, table, dlqTable: false });
  await outbox.migrate();
  if (variant === 'hot') {
    await admin.query(`ALTER TABLE ${table} SET (fillfactor = 50)`);
    await admin.query(`DROP INDEX ${table}_ready_idx`);
    await admin.query(`DROP INDEX ${table}_lease_idx`);
    await admin.query(`CREATE INDEX ${table}_due_idx ON ${table} (queue, next_attempt_at, id)`);
  }
  const client = await admin.connect();
  try {
    await client.query('BEGIN');
    for (let i = 0; i < rows; i += 1000) {
      const bodies = Array.from({ length: Math.min(1000, rows - i) }, (_, n) => ({ n: i + n, pad: 'x'.repeat(200) }));
      await outbox.publishBatch(client, 'bench', bodies);
    }
    await client.query('COMMIT');
  } finally {
    client.release();
    await outbox.stop();
  }
  await admin.query(`VACUUM ANALYZE ${table}`);
}

const server = await startEmbeddedPostgres();
const admin = new pg.Pool({ connectionString: server.connectionString, max: 2 });
// An idle connection the server closes at shutdown must not crash the probe after its results.
admin.on('error', () => undefined);
try {
  console.log(`one claim of ${BATCH} rows (round trip included) and WAL per row claimed and deleted, ${CYCLES} cycles`);
  for (const inFlight of IN_FLIGHT) {
    for (const variant of ['shipped', 'hot'] as const) {
      const table = `probe_${variant}_${inFlight}`;
      await prepare(server, admin, table, variant, inFlight + BACKLOG);
      const shipped = buildSubscriberSql(resolveSchemaNames(table, false)).claimOne.text;
      const claim = (): Promise<pg.QueryResult<{ id: string }>> =>
        variant === 'hot'
          ? admin.query(hotClaimText(table), [BATCH, randomUUID()])
          : admin.query(shipped, ['bench', 60_000, BATCH, randomUUID(), []]);
      for (let held = 0; held < inFlight; held += BATCH) await claim(); // leased and kept: at the head
      await admin.query('CHECKPOINT');
      const lsn0 = (await admin.query<{ l: string }>('SELECT pg_current_wal_lsn() AS l')).rows[0]?.l;
      let claimMs = 0;
      let previous: string[] = [];
      for (let cycle = 0; cycle < CYCLES; cycle += 1) {
        const started = performance.now();
        const { rows } = await claim();
        claimMs += performance.now() - started;
        if (previous.length > 0) await admin.query(`DELETE FROM ${table} WHERE id = ANY($1::bigint[])`, [previous]);
        previous = rows.map((row) => row.id);
      }
      const { rows } = await admin.query<{ d: string }>('SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1) AS d', [lsn0]);
      const walPerRow = Number(rows[0]?.d) / (CYCLES * BATCH);
      console.log(
        `  ${String(inFlight).padStart(5)} in flight  ${variant.padEnd(8)} ${(claimMs / CYCLES).toFixed(2)} ms per claim, ${walPerRow.toFixed(0)} WAL B/row`,
      );
    }
  }
} finally {
  await admin.end();
  await server.stop();
}
