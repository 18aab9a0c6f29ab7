/**
 * The multi-queue claim before and after issue 18's rework (BENCHMARKS.md, "Issue 18: cost as the
 * work grows", b), interleaved in one run: per queue count, a fresh database with 20,000 ready rows
 * spread evenly, then 60 sequential claim (100 rows) + ack cycles on one connection with
 * `plan_cache_mode = force_custom_plan` (planning included, as the library's own pool plans),
 * for the shipped claimMany, the statement it replaced (copied below) and claimOne over one
 * queue. Prints the minimum and median claim time of the last 55 cycles and rows per claim.
 *
 *   node --import tsx bench/src/probes/claim-many-ab.ts [queue counts=10,100,1000]
 */
import { randomUUID } from 'node:crypto';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { Outbox } from '../../../src/index.js';
import { resolveSchemaNames } from '../../../src/schema/schema-names.js';
import { buildSubscriberSql, CLAIMED_FIELDS, keyTurn } from '../../../src/subscriber/sql.js';
import { queueNames } from '../scale/drain.js';
import { loadOutboxBacklog } from '../scale/tables.js';

const TABLE = '"txoutbox"."outbox"';
const PAUSED = '"txoutbox"."outbox_paused"';
const CYCLES = 60;
const WARMUP = 5;

/** claimMany before issue 18: per queue a locking walk of up to $3 rows, merged, the oldest $3 kept. */
function beforeText(): string {
  const notPaused = `WHERE NOT EXISTS (SELECT 1 FROM ${PAUSED} AS p WHERE p.queue = q.queue)`;
  const walk = (branch: string, order: string, cols: string) => `  SELECT c.id FROM unnest($1::text[]) AS q(queue)
  CROSS JOIN LATERAL (
    SELECT o.id, ${cols} FROM ${TABLE} AS o
    WHERE ${branch}
    ORDER BY ${order}
    LIMIT $3
    FOR UPDATE SKIP LOCKED
  ) AS c
  ${notPaused}
  ORDER BY ${order.replaceAll('o.', 'c.')}
  LIMIT $3`;
  return `WITH ready AS (
${walk(`o.acquired_token IS NULL AND o.queue = q.queue AND o.next_attempt_at <= now() AND ${keyTurn(TABLE, 'o')}`, 'o.next_attempt_at, o.id', 'o.next_attempt_at')}
), expired AS (
${walk(`o.acquired_token IS NOT NULL AND o.queue = q.queue AND o.acquired_at < now() - $2::double precision * interval '1 millisecond' AND o.id <> ALL($5::bigint[])`, 'o.acquired_at', 'o.acquired_at')}
), picked AS (
  SELECT id FROM ready UNION ALL SELECT id FROM expired LIMIT $3
), claimed AS (
  UPDATE ${TABLE} AS t SET acquired_token = $4::uuid, acquired_at = now(), deliveries_count = t.deliveries_count + 1
  WHERE t.id = ANY(ARRAY(SELECT id FROM picked)) AND (SELECT set_config('synchronous_commit', 'off', true)) = 'off'
  RETURNING id, next_attempt_at, ${CLAIMED_FIELDS}
)
SELECT id::text AS id, ${CLAIMED_FIELDS} FROM claimed ORDER BY claimed.next_attempt_at, claimed.id`;
}

const sql = buildSubscriberSql(resolveSchemaNames('txoutbox.outbox', undefined));
const counts = (process.argv[2] ?? '10,100,1000').split(',').map(Number);
const server = await startEmbeddedPostgres();
const admin = new pg.Client({ connectionString: server.connectionString });
await admin.connect();
let databases = 0;
try {
  for (const count of counts) {
    const systems = [
      ['after', sql.claimMany.text, queueNames(count)],
      ['before', beforeText(), queueNames(count)],
      ['claimOne', sql.claimOne.text, 'q0'],
    ] as const;
    for (const [name, text, queues] of systems) {
      const database = `claim_many_ab_${(databases += 1)}`;
      await admin.query(`CREATE DATABASE ${database}`);
      const url = new URL(server.connectionString);
      url.pathname = `/${database}`;
      const outbox = new Outbox({ connectionString: url.toString() });
      await outbox.migrate();
      await outbox.stop();
      await loadOutboxBacklog(url.toString(), { ready: 20_000, queues: typeof queues === 'string' ? [queues] : queues }, {});
      const client = new pg.Client({ connectionString: url.toString(), options: '-c plan_cache_mode=force_custom_plan' });
      await client.connect();
      const times: number[] = [];
      let rows = 0;
      try {
        for (let i = 0; i < CYCLES; i += 1) {
          const started = performance.now();
          const claimed = await client.query<{ id: string | null }>({
            name: 'claim',
            text,
            values: [queues, 30_000, 100, randomUUID(), '{}'],
          });
          if (i >= WARMUP) times.push(performance.now() - started);
          // Not the report rows the shipped claimMany adds (id NULL, one per listed queue: queue-schedule.ts).
          const ids = claimed.rows.map((r) => r.id).filter((id) => id !== null);
          rows += ids.length;
          await client.query(`DELETE FROM ${TABLE} WHERE id = ANY($1::bigint[])`, [ids]);
        }
      } finally {
        await client.end();
        await admin.query(`DROP DATABASE ${database} WITH (FORCE)`);
      }
      times.sort((a, b) => a - b);
      const [min = Number.NaN, median = Number.NaN] = [times[0], times[times.length >> 1]];
      const label = name === 'claimOne' ? 'claimOne, 1 queue' : `${name}, ${count} queues`;
      console.log(
        `${label}: claim min ${min.toFixed(2)} ms, median ${median.toFixed(2)} ms, ${(rows / CYCLES).toFixed(0)} rows per claim`,
      );
    }
  }
} finally {
  await admin.end();
  await server.stop();
}
