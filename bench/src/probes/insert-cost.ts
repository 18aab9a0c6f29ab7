/**
 * What one publish INSERT costs the server, by what the table carries: the same statement against
 * copies of the outbox table with its indexes and CHECK constraint removed one group at a time,
 * and raw SQL's table. One client, no concurrency, `synchronous_commit = off` (the flush is not
 * what is measured); mean execution time per statement from pg_stat_statements. BENCHMARKS.md
 * ("W1 — the INSERT's server CPU") quotes its output.
 *
 *   node --import tsx bench/src/probes/insert-cost.ts [inserts per variant, default 20000]
 */
import pg from 'pg';

import { startEmbeddedPostgres } from '../../../src/embedded/index.js';
import { Outbox } from '../../../src/index.js';
import { buildProducerSql } from '../../../src/producer/sql.js';
import { resolveSchemaNames } from '../../../src/schema/schema-names.js';
import * as RAW from '../systems/raw.js';
import { body } from '../systems/system.js';

const inserts = Number(process.argv[2] ?? 20_000);
const ROUNDS = 3;

/** Table copies of `txoutbox.outbox` (LIKE … INCLUDING ALL) and what each one drops. */
const VARIANTS: readonly { readonly table: string; readonly label: string; readonly drop: readonly string[] }[] = [
  { table: 'v_pkey', label: 'primary key only', drop: ['ready_idx', 'lease_idx', 'timer_uq', 'check'] },
  { table: 'v_ready', label: '+ ready_idx', drop: ['lease_idx', 'timer_uq', 'check'] },
  { table: 'v_check', label: '+ lease_ck CHECK', drop: ['lease_idx', 'timer_uq'] },
  { table: 'v_shipped', label: '+ lease_idx, timer_uq (as shipped)', drop: [] },
];

/** Index name fragments as LIKE … INCLUDING ALL names the copies' indexes (by their columns). */
const INDEX_COLUMNS: Readonly<Record<string, string>> = {
  ready_idx: 'next_attempt_at',
  lease_idx: 'acquired_at',
  timer_uq: 'timer_id',
};

const server = await startEmbeddedPostgres({
  settings: { shared_preload_libraries: 'pg_stat_statements', synchronous_commit: 'off' },
});
const admin = new pg.Pool({ connectionString: server.connectionString, max: 2 });
// An idle connection the server closes at shutdown must not crash the probe after its results.
admin.on('error', () => undefined);
try {
  await admin.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
  const outbox = new Outbox({ connectionString: server.connectionString, dlqTable: false });
  await outbox.migrate();
  await outbox.stop();

  for (const { table, drop } of VARIANTS) {
    await admin.query(`CREATE TABLE ${table} (LIKE txoutbox.outbox INCLUDING ALL)`);
    for (const part of drop) {
      if (part === 'check') {
        const { rows } = await admin.query<{ name: string }>(
          `SELECT conname AS name FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'c'`,
          [table],
        );
        for (const { name } of rows) await admin.query(`ALTER TABLE ${table} DROP CONSTRAINT ${name}`);
        continue;
      }
      const { rows } = await admin.query<{ name: string }>(
        `SELECT indexname AS name FROM pg_indexes WHERE tablename = $1 AND indexname LIKE '%' || $2 || '%'`,
        [table, INDEX_COLUMNS[part]],
      );
      for (const { name } of rows) await admin.query(`DROP INDEX ${name}`);
    }
  }
  await admin.query(RAW.CREATE_TABLE);

  // The bench's message and txoutbox's INSERT (src/producer/sql.ts, after-commit mode) on each copy.
  const payload = JSON.stringify(body(1));
  const headers = JSON.stringify({ 'content-type': 'application/json', 'correlation-id': crypto.randomUUID() });
  const statements = [
    ...VARIANTS.map(({ table, label }) => ({
      label,
      name: `probe_${table}`,
      text: buildProducerSql(resolveSchemaNames(table, false)).afterCommit.publish.text,
      values: ['bench', Buffer.from(payload), headers, null, 0] as unknown[],
    })),
    { label: "raw SQL's table", name: 'probe_raw', text: RAW.INSERT, values: [payload] },
  ];

  const client = new pg.Client({ connectionString: server.connectionString });
  await client.connect();
  const results = new Map<string, number[]>();
  for (let round = 1; round <= ROUNDS; round += 1) {
    await admin.query('SELECT pg_stat_statements_reset()');
    for (const { name, text, values } of statements) {
      for (let i = 0; i < inserts; i += 1) await client.query({ name, text, values });
    }
    for (const { label, text } of statements) {
      // By prefix: the entry's text is normalized (constants as $n) when the round parsed it.
      const { rows } = await admin.query<{ us: number }>(
        `SELECT sum(total_exec_time) / sum(calls) * 1000 AS us FROM pg_stat_statements WHERE query LIKE $1 || '%'`,
        [text.slice(0, text.indexOf('('))],
      );
      results.set(label, [...(results.get(label) ?? []), rows[0]?.us ?? NaN]);
    }
  }
  await client.end();
  console.log(`INSERT execution, µs per statement (${inserts} per variant, ${ROUNDS} rounds)`);
  for (const [label, us] of results) console.log(`  ${label.padEnd(40)} ${us.map((u) => u.toFixed(1)).join('  ')}`);
} finally {
  await admin.end();
  await server.stop();
}
