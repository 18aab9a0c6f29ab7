import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';

import { resolveSchemaNames } from '../../src/schema/schema-names.js';
import { Acker, type AckResult } from '../../src/subscriber/acker.js';
import type { ClaimedRecord } from '../../src/subscriber/message.js';
import { buildSubscriberSql } from '../../src/subscriber/sql.js';
import { StatementRunner } from '../../src/util/statement-runner.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Statements the database refuses, by a trigger (the table stays writable for publishes). */
async function failUpdates(table: string): Promise<void> {
  await db.pool.query(`CREATE FUNCTION ${table}_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'injected: claims refused'; END $$`);
  await db.pool.query(`CREATE TRIGGER ${table}_refuse BEFORE UPDATE ON ${table} FOR EACH ROW EXECUTE FUNCTION ${table}_refuse()`);
}

describe('database faults on the subscriber path', () => {
  test('a failing claim backs off exponentially: wake-ups from publishes do not cut the pause short', async () => {
    const table = 'df_claim';
    const { outbox } = await migratedOutbox(newOutbox, db.pool, table);
    await failUpdates(table);
    const handled = new Set<string>();
    outbox.subscribe(
      'claims',
      (message) => {
        handled.add(message.id);
      },
      FAST_POLL,
    );
    outbox.start();
    const before = newOutbox.logger.entries.length;
    const claimFailures = (): number =>
      newOutbox.logger.entries.slice(before).filter((e) => e.message.startsWith('claim failed')).length;
    // Publish traffic for ~2 s: every commit wakes the subscription.
    const started = Date.now();
    let published = 0;
    while (Date.now() - started < 2000) {
      await publishCommitted(outbox, db.pool, 'claims', [published]);
      published += 1;
      await sleep(10);
    }
    const failures = claimFailures();
    // 250 ms, 500 ms, 1 s (±jitter) fit in 2 s: a handful of attempts, not one per publish.
    assert.ok(failures <= 6, `${failures} claim attempts in 2 s under ${published} publishes`);
    assert.ok(failures >= 2, 'the failures were retried');
    await db.pool.query(`DROP TRIGGER ${table}_refuse ON ${table}`);
    await waitFor(async () => (await remaining(db.pool, 'claims', table)) === 0, {
      timeoutMs: 20_000,
      what: 'claiming resumed after the fault cleared',
    });
    assert.equal(handled.size, published);
  });

  test('ping() is false while every claim fails (the database answers SELECT 1 but refuses claims), true again once they work', async () => {
    const table = 'df_ping';
    const { outbox } = await migratedOutbox(newOutbox, db.pool, table, { queryTimeoutMs: 100 });
    await failUpdates(table);
    await publishCommitted(outbox, db.pool, 'ping', ['x']); // a row to claim: the trigger fires on it
    outbox.subscribe('ping', () => undefined, FAST_POLL);
    outbox.start();
    // 3 × queryTimeoutMs of nothing but failures.
    await waitFor(async () => !(await outbox.ping()), { what: 'ping() reports the failing claims' });
    await db.pool.query(`DROP TRIGGER ${table}_refuse ON ${table}`);
    await waitFor(() => outbox.ping(), { timeoutMs: 20_000, what: 'ping() recovers after a claim succeeds' });
  });

  test('one ack DELETE carrying a row under an expired token and its current one: only the current holder is acked', async () => {
    const table = 'df_ack_pairs';
    await migratedOutbox(newOutbox, db.pool, table);
    const [id] = await db.pool
      .query<{ id: string }>(`INSERT INTO ${table} (queue, payload) VALUES ('pairs', '\\x00') RETURNING id::text AS id`)
      .then((r) => r.rows.map((row) => row.id));
    const current = randomUUID();
    await db.pool.query(`UPDATE ${table} SET acquired_token = $1, acquired_at = now() WHERE id = $2`, [current, id]);
    const sql = buildSubscriberSql(resolveSchemaNames(table, false));
    const settled: { token: string; result: AckResult }[] = [];
    const acker = new Acker(new StatementRunner(db.pool, true, 5_000), sql.ackMissed, newOutbox.logger, (entry, result) => {
      settled.push({ token: entry.lease.token, result });
    });
    const record = { id } as ClaimedRecord;
    const stale = randomUUID();
    for (const token of [stale, current])
      acker.ack({ lease: { record, token, leasedAt: 0 }, durationSeconds: 0, written: undefined });
    await acker.drain();
    assert.deepEqual(settled, [
      { token: stale, result: 'lease_lost' },
      { token: current, result: 'deleted' },
    ]);
    assert.equal(await remaining(db.pool, 'pairs', table), 0);
  });

  test('the ack DELETE (ackMissed) answers with exactly the pairs it did not delete: none when every lease holds', async () => {
    const table = 'df_ack_missed';
    await migratedOutbox(newOutbox, db.pool, table);
    const ids = await db.pool
      .query<{ id: string }>(
        `INSERT INTO ${table} (queue, payload) SELECT 'missed', '\\x00' FROM generate_series(1, 4) RETURNING id::text AS id`,
      )
      .then((r) => r.rows.map((row) => row.id));
    const tokens = ids.map(() => randomUUID());
    for (const [i, id] of ids.entries())
      await db.pool.query(`UPDATE ${table} SET acquired_token = $1, acquired_at = now() WHERE id = $2`, [tokens[i], id]);
    const sql = buildSubscriberSql(resolveSchemaNames(table, false));
    const runner = new StatementRunner(db.pool, true, 5_000);
    const pairs = (list: readonly (readonly [string, string])[]) => [
      `{${list.map(([id]) => id).join(',')}}`,
      `{${list.map(([, token]) => token).join(',')}}`,
    ];
    const [a, b, c, d] = ids.map((id, i) => [id, tokens[i]!] as const);
    assert.ok(a !== undefined && b !== undefined && c !== undefined && d !== undefined);
    // Every lease holds: an empty answer, and both rows are gone.
    assert.deepEqual((await runner.run(sql.ackMissed, pairs([a, b]))).rows, []);
    // A stale token (its row's lease is another's), a row already gone, a good pair: the first two come back.
    const stale = randomUUID();
    const { rows } = await runner.run<{ id: string; token: string }>(sql.ackMissed, pairs([[c[0], stale], a, d]));
    assert.deepEqual(rows.map((row) => `${row.id} ${row.token}`).sort(), [`${c[0]} ${stale}`, `${a[0]} ${a[1]}`].sort());
    const left = await db.pool.query<{ id: string }>(`SELECT id::text AS id FROM ${table} ORDER BY id`);
    assert.deepEqual(
      left.rows.map((row) => row.id),
      [c[0]],
      'the stale pair deleted nothing; the good ones deleted their rows',
    );
  });

  test('a failed ack DELETE is retried: the handled row is deleted at once, not redelivered after its lease', async () => {
    const table = 'df_ack';
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table);
    // The first DELETE fails (a sequence is not rolled back with the statement), later ones pass.
    await db.pool.query(`CREATE SEQUENCE ${table}_deletes`);
    await db.pool.query(`CREATE FUNCTION ${table}_fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF nextval('${table}_deletes') = 1 THEN RAISE EXCEPTION 'injected: ack refused once'; END IF; RETURN OLD; END $$`);
    await db.pool.query(
      `CREATE TRIGGER ${table}_fail_once BEFORE DELETE ON ${table} FOR EACH ROW EXECUTE FUNCTION ${table}_fail_once()`,
    );
    const runs: number[] = [];
    outbox.subscribe(
      'acks',
      (message) => {
        runs.push(message.deliveriesCount);
      },
      { ...FAST_POLL, leaseTtlMs: 60_000 },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'acks', ['x']);
    await log.waitFor('acked', 1, 10_000);
    assert.equal(await remaining(db.pool, 'acks', table), 0);
    assert.deepEqual(runs, [1], 'handled once');
    assert.ok(newOutbox.logger.messages('warn').some((m) => m.includes('ack DELETE failed; retrying')));
  });
});
