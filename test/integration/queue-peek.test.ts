import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { InvalidOptionError, type Outbox, type PeekedPreview, type PeekedRow, type PeekOptions } from '../../src/index.js';
import { buildPeekSql } from '../../src/queues/peek-sql.js';
import { resolveSchemaNames } from '../../src/schema/schema-names.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const HOUR = 3_600_000;

async function leaseColumns(table: string, queue: string): Promise<{ id: string; deliveries: number; leased: boolean }[]> {
  const { rows } = await db.pool.query<{ id: string; deliveries_count: number; leased: boolean }>(
    `SELECT id::text AS id, deliveries_count, acquired_token IS NOT NULL AS leased FROM ${table} WHERE queue = $1 ORDER BY id`,
    [queue],
  );
  return rows.map((r) => ({ id: r.id, deliveries: r.deliveries_count, leased: r.leased }));
}

/** Every page of peek(queue, options) until nextCursor is null. */
async function allPages(outbox: Outbox, queue: string, options: PeekOptions): Promise<{ rows: PeekedRow[]; pages: number }> {
  const rows: PeekedRow[] = [];
  let cursor: string | undefined;
  for (let pages = 1; ; pages += 1) {
    const page = await outbox.peek(queue, { ...options, ...(cursor === undefined ? {} : { cursor }) });
    assert.ok(page.rows.length <= (options.limit ?? 50));
    rows.push(...page.rows);
    if (page.nextCursor === null) return { rows, pages };
    cursor = page.nextCursor;
  }
}

describe('outbox.peek', () => {
  test('ready, scheduled and leased rows, each with its state, oldest first, filtered by state; peeking leases nothing', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'peek_states');
    // Two leased rows: a subscriber whose handler blocks until the test releases it. With
    // concurrency 1 and fetchBatchSize 1 it holds one running row and one buffered (both leased),
    // and claims nothing more: the ready rows published next stay ready.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const running = new Set<string>();
    outbox.subscribe(
      'q',
      async (message) => {
        running.add(message.id);
        await released;
      },
      { concurrency: 1, fetchBatchSize: 1, ...FAST_POLL },
    );
    const [leased1, leased2] = await publishCommitted(outbox, db.pool, 'q', [{ n: 'leased-1' }, { n: 'leased-2' }]);
    outbox.start();
    try {
      await waitFor(async () => running.size === 1 && (await leaseColumns('peek_states', 'q')).every((r) => r.leased), {
        what: 'one row running, one buffered: both leased',
      });
      // Ready rows in three transactions: next_attempt_at ascends with the id.
      const [ready1] = await publishCommitted(outbox, db.pool, 'q', ['ready-1']);
      const [ready2] = await publishCommitted(outbox, db.pool, 'q', [{ big: 'é'.repeat(2_000) }]);
      const [ready3] = await publishCommitted(outbox, db.pool, 'q', [Buffer.from('raw bytes')]);
      // Scheduled: published later-due first, so "oldest first" must follow next_attempt_at, not the id.
      const later = await inTransaction(db.pool, (c) => outbox.publish(c, 'q', 'in two hours', { activateInMs: 2 * HOUR }));
      const sooner = await inTransaction(db.pool, (c) => outbox.publish(c, 'q', 'in one hour', { activateInMs: HOUR }));
      await publishCommitted(outbox, db.pool, 'other', ['another queue']);
      const before = await leaseColumns('peek_states', 'q');

      const all = await outbox.peek('q');
      assert.deepEqual(
        all.rows.map((r) => [r.state, r.id]),
        [
          ['ready', ready1],
          ['ready', ready2],
          ['ready', ready3],
          ['scheduled', sooner],
          ['scheduled', later],
          ['leased', leased1],
          ['leased', leased2],
        ],
      );
      assert.equal(all.nextCursor, null);
      const [r1, r2, r3] = all.rows;
      assert.equal(r1?.bodyPreview, 'ready-1');
      assert.equal(r1?.bodyPreviewTruncated, false);
      assert.equal(r1?.headers['content-type'] !== undefined, true, 'headers come with the row');
      // 1 KiB of the JSON text, cut between characters (é is two bytes in UTF-8).
      assert.equal(r2?.bodyPreviewTruncated, true);
      assert.ok(Buffer.byteLength(r2?.bodyPreview ?? '') <= 1_024 && Buffer.byteLength(r2?.bodyPreview ?? '') >= 1_023);
      assert.ok(r2?.bodyPreview.startsWith('{"big":"éé'));
      assert.ok(!(r2?.bodyPreview ?? '').includes('\uFFFD'), 'no half character');
      assert.equal(r3?.bodyPreview, 'raw bytes');
      assert.ok(all.rows.slice(5).every((r) => r.acquiredAt instanceof Date && r.deliveriesCount === 1));

      for (const [state, ids] of [
        ['ready', [ready1, ready2, ready3]],
        ['scheduled', [sooner, later]],
        ['leased', [leased1, leased2]],
      ] as const) {
        const page = await outbox.peek('q', { state });
        assert.deepEqual(
          page.rows.map((r) => r.id),
          ids,
          state,
        );
        assert.ok(page.rows.every((r) => r.state === state));
      }
      // A lease older than the TTL is ready again (a claim would take it): the expired-lease branch.
      await waitFor(async () => (await outbox.peek('q', { state: 'leased', leaseTtlMs: 1 })).rows.length === 0);
      const expired = await outbox.peek('q', { state: 'ready', leaseTtlMs: 1 });
      assert.deepEqual(expired.rows.map((r) => r.id).sort(), [ready1, ready2, ready3, leased1, leased2].sort());

      // Peeking leased nothing and counted no delivery.
      assert.deepEqual(await leaseColumns('peek_states', 'q'), before);
      assert.deepEqual(
        before.filter((r) => r.leased).map((r) => r.id),
        [leased1, leased2],
      );
      assert.ok(before.filter((r) => !r.leased).every((r) => r.deliveries === 0));
    } finally {
      release();
    }
    await waitFor(async () => (await outbox.peek('q', { state: 'leased' })).rows.length === 0, { what: 'handlers acked' });
  });

  test('takes no lock: rows another transaction holds FOR UPDATE are still shown, without waiting', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'peek_locks');
    const ids = await publishCommitted(outbox, db.pool, 'q', [1, 2, 3]);
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SELECT id FROM peek_locks WHERE queue = 'q' FOR UPDATE`);
      const page = await outbox.peek('q', { state: 'ready' });
      assert.deepEqual(
        page.rows.map((r) => r.id),
        ids,
      );
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });

  test('pages over many rows (ties on next_attempt_at broken by id): every row once, none missing, in order', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'peek_pages');
    // One batch shares one now(): 230 rows with the same next_attempt_at.
    const ready = await publishCommitted(
      outbox,
      db.pool,
      'q',
      Array.from({ length: 230 }, (_, i) => ({ i })),
    );
    const scheduled = await inTransaction(db.pool, (c) =>
      outbox.publishBatch(
        c,
        'q',
        Array.from({ length: 40 }, (_, i) => ({ s: i })),
        { activateInMs: HOUR },
      ),
    );
    const { rows, pages } = await allPages(outbox, 'q', { limit: 7 });
    assert.ok(pages > 30);
    assert.deepEqual(
      rows.map((r) => r.id),
      [...ready, ...scheduled],
    );
    assert.equal(new Set(rows.map((r) => r.id)).size, rows.length, 'no row twice');
    const onlyScheduled = await allPages(outbox, 'q', { state: 'scheduled', limit: 15 });
    assert.deepEqual(
      onlyScheduled.rows.map((r) => r.id),
      scheduled,
    );
    assert.equal((await outbox.peek('q', { limit: 1_000 })).rows.length, 270);
  });

  test('peekPreviews: the rows, order and cursors of peek(), each with 1 KiB of its payload and its size, never the body', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'peek_previews');
    // A 5 MB body, a multi-byte character across the 1 KiB cut, a short string, bytes.
    const big = { blob: 'x'.repeat(5_000_000) };
    const cut = `${'a'.repeat(1_023)}é and more`;
    const ids = await publishCommitted(outbox, db.pool, 'q', [big, cut, 'short', Buffer.from([0xde, 0xad])]);
    const whole = await allPages(outbox, 'q', { limit: 3 });
    const previews: PeekedPreview[] = [];
    let cursor: string | undefined;
    do {
      const page = await outbox.peekPreviews('q', { limit: 3, ...(cursor === undefined ? {} : { cursor }) });
      previews.push(...page.rows);
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
    assert.deepEqual(
      previews.map((r) => r.id),
      ids,
    );
    for (const [i, preview] of previews.entries()) {
      const row = whole.rows[i] as PeekedRow;
      assert.ok(!('body' in preview) && !('payload' in preview), 'no body, no payload');
      const cleared = { body: undefined, payload: undefined, payloadBytes: undefined, payloadHead: undefined };
      assert.deepEqual({ ...preview, ...cleared }, { ...row, ...cleared });
      assert.equal(preview.payloadBytes, row.payload.length);
      assert.deepEqual(preview.payloadHead, row.payload.subarray(0, 1_024), 'the stored bytes the preview shows');
    }
    assert.equal(previews[0]?.bodyPreview, JSON.stringify(big).slice(0, 1_024));
    assert.equal(previews[0]?.bodyPreviewTruncated, true);
    // The é's two bytes straddle byte 1,024: left out whole, never half shown.
    assert.equal(previews[1]?.bodyPreview, cut.slice(0, 1_023));
    assert.equal(previews[2]?.bodyPreviewTruncated, false);
    assert.equal(previews[3]?.payloadBytes, 2);
    // Cursors are interchangeable with peek()'s.
    const first = await outbox.peek('q', { limit: 1 });
    const next = await outbox.peekPreviews('q', { limit: 1, cursor: first.nextCursor ?? '' });
    assert.equal(next.rows[0]?.id, ids[1]);
  });

  test('bad options are refused with InvalidOptionError naming the option', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'peek_bad');
    await publishCommitted(outbox, db.pool, 'q', [1, 2]);
    const first = await outbox.peek('q', { state: 'ready', limit: 1 });
    assert.ok(first.nextCursor !== null);
    const cases: [string, unknown, unknown][] = [
      ['queue', '', undefined],
      ['queue', 'a\u0000', undefined],
      ['state', 'q', { state: 'pending' }],
      ['limit', 'q', { limit: 0 }],
      ['limit', 'q', { limit: 1_001 }],
      ['limit', 'q', { limit: 2.5 }],
      ['cursor', 'q', { cursor: 'nonsense' }],
      // A cursor of the ready walk does not belong to the scheduled one.
      ['cursor', 'q', { state: 'scheduled', cursor: first.nextCursor }],
      // Shaped as a cursor but not a date: it reached PostgreSQL's ::timestamp, a raw 22008 error.
      [
        'cursor',
        'q',
        { cursor: Buffer.from(JSON.stringify(['ready', '2024-13-45T99:99:99.000000', '1'])).toString('base64url') },
      ],
      [
        'cursor',
        'q',
        { cursor: Buffer.from(JSON.stringify(['ready', '0000-01-01T00:00:00.000000', '1'])).toString('base64url') },
      ],
      ['leaseTtlMs', 'q', { leaseTtlMs: -1 }],
      ['offset', 'q', { offset: 10 }],
      ['options', 'q', 'ready'],
    ];
    for (const [option, queue, options] of cases) {
      await assert.rejects(
        outbox.peek(queue as string, options as PeekOptions),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option && error.fix !== undefined,
        `${option}: ${JSON.stringify(options)}`,
      );
    }
  });

  test('each state walks its partial index in order: no sequential scan, no sort of the backlog', async () => {
    const table = 'peek_plan';
    await migratedOutbox(newOutbox, db.pool, table, { dlqTable: false });
    await db.pool.query(
      `INSERT INTO ${table} (queue, payload, next_attempt_at, acquired_token, acquired_at)
       SELECT CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, '\\x00'::bytea,
         now() + CASE g % 3 WHEN 0 THEN interval '-1 hour' ELSE interval '1 hour' END + g * interval '1 millisecond',
         CASE WHEN g % 10 = 0 THEN gen_random_uuid() END, CASE WHEN g % 10 = 0 THEN now() - g * interval '1 microsecond' END
       FROM generate_series(1, 30000) AS g`,
    );
    await db.pool.query(`ANALYZE ${table}`);
    const sql = buildPeekSql(resolveSchemaNames(table, false));
    const at = '2026-01-01T00:00:00.000000';
    for (const [state, params, index] of [
      ['ready', ['a', 60_000, at, '1', 50], `${table}_ready_idx`],
      ['scheduled', ['a', at, '1', 50], `${table}_ready_idx`],
      ['leased', ['a', 60_000, at, '1', 50], `${table}_lease_idx`],
    ] as const) {
      // Then the page's byte budget (bytes left, first row always); peekPreviews walks the same way,
      // with one more parameter, the preview's bytes.
      for (const [statement, values] of [
        [sql[state], [...params, 8 * 1024 * 1024, true]],
        [sql.previews[state], [...params, 8 * 1024 * 1024, true, 1_024]],
      ] as const) {
        const { rows } = await db.pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${statement.text}`, [...values]);
        const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
        assert.ok(plan.includes(index), `${statement.name} uses ${index}:\n${plan}`);
        assert.ok(!/Seq Scan/.test(plan), `${statement.name}: no sequential scan:\n${plan}`);
      }
    }
  });
});
