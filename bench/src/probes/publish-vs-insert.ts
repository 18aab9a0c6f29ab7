/**
 * Where W1's gap to raw SQL comes from: the library's publish path, or the table it writes to.
 * Eight producers commit single-message transactions (W1's shape, fsync on), four ways, in
 * interleaved rounds (each round starts one way later, so no way always follows the same one):
 *
 * - `txoutbox publish`: `outbox.publish(client, …)` as shipped (after-commit wake-up included);
 * - `publish, no wake-up`: the same with `activateInMs: 1`: the row is not due at COMMIT, so no
 *   NOTIFY followed (the wake-up's own cost, by difference). Since issue 18's round twenty-two a
 *   row not due announces when it is due (src/queues/channel-signal.ts), so this way pays a
 *   wake-up too and no longer isolates it; BENCHMARKS.md's table was measured before;
 * - `same INSERT by hand`: the INSERT publish sends, with the same values, through plain `pg`;
 * - `raw SQL`: raw SQL's table (`id`, `payload jsonb`, `created_at`), as in the bench.
 *
 * The first and second differ by the after-commit wake-up (watching the connection for the COMMIT,
 * then the notifier's NOTIFY statements); the second and third by the library's
 * own publish path; the third and fourth by the row and its indexes (bench/src/probes/insert-cost.ts
 * splits that up). Node's CPU per message is printed too: on loopback it moves with the server's
 * work, not only the library's.
 * BENCHMARKS.md ("W1 — the INSERT's server CPU") quotes its output.
 *
 *   node --import tsx bench/src/probes/publish-vs-insert.ts [messages per round, default 8000] [rounds, default 3]
 *
 * Round 1 includes warm-up (JIT, the notifier's connection): read rounds 2 and later.
 */
import { randomUUID } from 'node:crypto';

import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { Outbox } from '../../../src/index.js';
import { buildProducerSql } from '../../../src/producer/sql.js';
import { resolveSchemaNames } from '../../../src/schema/schema-names.js';
import * as RAW from '../systems/raw.js';
import { body } from '../systems/system.js';

const messages = Number(process.argv[2] ?? 8000);
const rounds = Number(process.argv[3] ?? 3);
const PRODUCERS = 8;

const server = await startEmbeddedPostgres();
const pool = new pg.Pool({ connectionString: server.connectionString, max: PRODUCERS });
pool.on('error', () => undefined);
const outbox = new Outbox({ connectionString: server.connectionString, dlqTable: false });
try {
  await outbox.migrate();
  await pool.query(RAW.CREATE_TABLE);
  const outboxInsert = buildProducerSql(resolveSchemaNames('txoutbox.outbox', false)).afterCommit.publish.text;
  const ways: readonly { readonly label: string; readonly one: (client: pg.PoolClient, n: number) => Promise<unknown> }[] = [
    { label: 'txoutbox publish', one: (client, n) => outbox.publish(client, 'bench', body(n)) },
    {
      label: 'publish, no wake-up',
      one: (client, n) => outbox.publish(client, 'bench', body(n), { activateInMs: 1 }),
    },
    {
      label: 'same INSERT by hand',
      one: (client, n) =>
        client.query({
          name: 'probe_outbox_insert',
          text: outboxInsert,
          values: [
            'bench',
            Buffer.from(JSON.stringify(body(n))),
            JSON.stringify({ 'content-type': 'application/json', 'correlation-id': randomUUID() }),
            null,
            0,
          ],
        }),
    },
    {
      label: 'raw SQL',
      one: (client, n) =>
        client.query({
          name: 'probe_raw_insert',
          text: RAW.INSERT,
          values: [JSON.stringify(body(n))],
        }),
    },
  ];

  const rows = new Map<string, string[]>();
  for (let round = 1; round <= rounds; round += 1) {
    const shift = (round - 1) % ways.length;
    for (const { label, one } of [...ways.slice(shift), ...ways.slice(0, shift)]) {
      let next = 0;
      const cpuBefore = process.cpuUsage();
      const started = performance.now();
      await Promise.all(
        Array.from({ length: PRODUCERS }, async () => {
          const client = await pool.connect();
          try {
            while (next < messages) {
              const n = next++;
              await client.query('BEGIN');
              await one(client, n);
              await client.query('COMMIT');
            }
          } finally {
            client.release();
          }
        }),
      );
      const seconds = (performance.now() - started) / 1000;
      const cpu = process.cpuUsage(cpuBefore);
      const cell = `${(messages / seconds / 1000).toFixed(2)}k/s, Node ${(cpu.user / messages).toFixed(0)}+${(cpu.system / messages).toFixed(0)} µs`;
      rows.set(label, [...(rows.get(label) ?? []), cell]);
    }
  }
  console.log(
    `${PRODUCERS} producers, ${messages} single-message transactions per round; msgs/s and Node CPU per message (user+system):`,
  );
  for (const [label, cells] of rows) console.log(`  ${label.padEnd(22)} ${cells.join('   ')}`);
} finally {
  await outbox.stop();
  await pool.end();
  await server.stop();
}
