import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { migratedOutbox } from '../support/subscriber-setup.js';
import { txoutboxBin, txoutboxMain } from '../support/txoutbox-bin.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

async function schemaCheck(table: string, ...args: string[]) {
  return await txoutboxBin(['schema', 'check', '--table', table, ...args], { env: { DATABASE_URL: db.url } });
}

interface CheckJson {
  ok: boolean;
  table: string;
  dlqTable: string | null;
  drift: { table: string; kind: string; message: string; fix: string }[];
  advisories: { kind: string; fix: string }[];
}

describe('txoutbox schema check', () => {
  test('a freshly migrated schema: exit 0; the untuned autovacuum is printed as advice, and gone once its DDL is applied', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'schema_clean');
    const fresh = await schemaCheck('schema_clean');
    assert.equal(fresh.code, 0, fresh.err);
    assert.match(fresh.out, /^ok: the schema of schema_clean \(DLQ schema_clean_dlq\) is what txoutbox expects\n/);
    assert.match(fresh.out, /\nadvisory: 1 finding \(does not fail the check\)\n- schema_clean \[autovacuum_not_tuned\]/);
    assert.ok(fresh.out.includes(`fix: ${outbox.autovacuumDdl()}`), 'the fix is autovacuumDdl()');
    const json = JSON.parse((await schemaCheck('schema_clean', '--json')).out) as CheckJson;
    assert.deepEqual(
      {
        ok: json.ok,
        table: json.table,
        dlqTable: json.dlqTable,
        drift: json.drift,
        advisories: json.advisories.map((a) => a.kind),
      },
      { ok: true, table: 'schema_clean', dlqTable: 'schema_clean_dlq', drift: [], advisories: ['autovacuum_not_tuned'] },
    );

    await db.pool.query(outbox.autovacuumDdl());
    const tuned = await schemaCheck('schema_clean');
    assert.equal(tuned.code, 0, tuned.err);
    assert.equal(tuned.out, 'ok: the schema of schema_clean (DLQ schema_clean_dlq) is what txoutbox expects, autovacuum tuned\n');
  });

  test('a dropped index is drift: exit 1, the finding names the index and its CREATE INDEX fix', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'schema_drift');
    await db.pool.query(outbox.autovacuumDdl());
    await db.pool.query('DROP INDEX schema_drift_ready_idx');
    const human = await schemaCheck('schema_drift');
    assert.equal(human.code, 1, human.err);
    assert.match(human.out, /^drift: 1 finding in the schema of schema_drift \(DLQ schema_drift_dlq\) \(exit 1\)\n/);
    assert.match(
      human.out,
      /- schema_drift \[missing_index\]: there is no index on \(queue, next_attempt_at, id\) WHERE acquired_token IS NULL\./,
    );
    assert.match(human.out, /\n {2}fix: CREATE INDEX CONCURRENTLY .*schema_drift.*\(queue, next_attempt_at, id\)/);
    assert.doesNotMatch(human.out, /advisory/);

    const json = await schemaCheck('schema_drift', '--json');
    assert.equal(json.code, 1);
    const parsed = JSON.parse(json.out) as CheckJson;
    assert.equal(parsed.ok, false);
    assert.deepEqual(
      parsed.drift.map((f) => [f.table, f.kind]),
      [['schema_drift', 'missing_index']],
    );
  });

  test('a table that does not exist is drift too (run migrate), not a crash', async () => {
    const missing = await schemaCheck('schema_never_made');
    assert.equal(missing.code, 1, missing.err);
    assert.match(missing.out, /\[missing_table\]: table schema_never_made does not exist/);
  });

  test('bad usage exits 2 before connecting', async () => {
    // No database at all: usage errors must come first.
    const spawned = await txoutboxBin(['schema'], { env: {} });
    assert.equal(spawned.code, 2, spawned.err);
    const run = async (...args: string[]) => await txoutboxMain(args, {});
    for (const [args, message] of [
      [['schema'], /schema takes check, got nothing/],
      [['schema', 'chek'], /schema takes check, got 'chek'/],
      [['schema', 'check', 'extra'], /unexpected argument 'extra'/],
      [['schema', 'check', '--limit', '3'], /--limit/],
    ] as const) {
      const result = await run(...args);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.err}`);
      assert.match(result.err, message);
    }
  });
});
