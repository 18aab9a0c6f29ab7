import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type pg from 'pg';

import { DeadLetters } from '../../src/dlq/dead-letters.js';
import { buildDlqSql } from '../../src/dlq/dlq-sql.js';
import { InvalidOptionError, type Message, NoRetry, REDRIVEN_FROM_HEADER, REDRIVEN_REASON_HEADER } from '../../src/index.js';
import { readSignal } from '../../src/queues/channel-signal.js';
import type { TableName } from '../../src/schema/identifiers.js';
import { resolveSchemaNames, type SchemaNames } from '../../src/schema/schema-names.js';
import type { Statement } from '../../src/util/statement.js';
import { StatementRunner } from '../../src/util/statement-runner.js';
import { useTestDatabase } from '../support/database.js';
import { keyedDeadLetters as plantKeyedDeadLetters } from '../support/dead-letter.js';
import { listen } from '../support/listen.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL, handlerStartsOf, migratedOutbox } from '../support/subscriber-setup.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Index Cond'?: string;
  Plans?: PlanNode[];
}

function nodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)];
}
const newOutbox = outboxFactory(db);

/** Bulk dead letters straight into the DLQ table (the subscriber path is tested below and in subscriber-delivery). */
async function seedDlq(table: string, rows: number, queue: string, reason: string, failedAt = 'now()'): Promise<void> {
  await db.pool.query(
    `INSERT INTO ${table}_dlq (original_id, queue, payload, headers, created_at, attempts_count, deliveries_count, failure_reason, last_exception, last_exception_type, failed_at)
     SELECT g, $1, convert_to(json_build_object('n', g)::text, 'UTF8'), '{"content-type":"application/json"}', now(), 3, 3, $2, 'Error: boom', 'Error', ${failedAt}
     FROM generate_series(1, $3::int) AS g`,
    [queue, reason, rows],
  );
}

/** A DLQ row's fields other than its body: what list() and listPreviews() must agree on. */
function withoutBody(row: object): Record<string, unknown> {
  const body = ['body', 'payload', 'bodyPreview', 'bodyPreviewTruncated', 'payloadBytes', 'payloadHead'];
  return Object.fromEntries(Object.entries(row).filter(([key]) => !body.includes(key)));
}

/** Dead letters of queue q with the given ordering keys, in id order (test/support/dead-letter.ts). */
function keyedDeadLetters(table: string, keys: readonly (string | null)[]): Promise<string[]> {
  return plantKeyedDeadLetters(db.pool, table, keys);
}

async function dlqCount(table: string, queue?: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>(
    `SELECT count(*) AS n FROM ${table}_dlq WHERE $1::text IS NULL OR queue = $1`,
    [queue ?? null],
  );
  return Number(rows[0]?.n);
}

describe('outbox.dlq', () => {
  test('list pages by cursor with filters (every row once, none missing, newest first); get decodes a row', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'q_list');
    // Same failed_at for many rows (one statement's now()): the id breaks the tie.
    await seedDlq('q_list', 120, 'a', 'retry_terminal');
    await seedDlq('q_list', 30, 'b', 'rejected', "now() - interval '1 hour'");
    // One that really went through the subscriber.
    outbox.subscribe(
      'real',
      () => {
        throw new RangeError('bad order');
      },
      { retry: new NoRetry(), ...FAST_POLL },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'real', [{ order: 1 }]);
    await log.waitFor('dlq_written');

    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    let previous: Date | undefined;
    do {
      const page = await outbox.dlq.list({ limit: 17, ...(cursor === undefined ? {} : { cursor }) });
      pages += 1;
      for (const row of page.rows) {
        if (previous !== undefined) assert.ok(row.failedAt <= previous);
        previous = row.failedAt;
      }
      seen.push(...page.rows.map((r) => r.id));
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
    assert.equal(seen.length, 151);
    assert.equal(new Set(seen).size, 151);
    assert.ok(pages >= 9);

    const b = await outbox.dlq.list({ queue: 'b', limit: 1000 });
    assert.equal(b.rows.length, 30);
    assert.equal(b.nextCursor, null);
    assert.ok(b.rows.every((r) => r.queue === 'b' && r.failureReason === 'rejected'));
    assert.equal((await outbox.dlq.list({ reason: 'rejected', limit: 1000 })).rows.length, 30);
    const hourAgo = new Date(Date.now() - 30 * 60_000);
    assert.equal((await outbox.dlq.list({ failedBefore: hourAgo, limit: 1000 })).rows.length, 30);
    assert.equal((await outbox.dlq.list({ failedAfter: hourAgo, limit: 1000 })).rows.length, 121);

    const [real] = (await outbox.dlq.list({ queue: 'real' })).rows;
    assert.ok(real);
    const got = await outbox.dlq.get(real.id);
    assert.deepEqual(got, real);
    assert.deepEqual(got?.body, { order: 1 });
    assert.equal(got?.failureReason, 'retry_terminal');
    assert.equal(got?.lastExceptionType, 'RangeError');
    assert.match(got?.lastException ?? '', /^RangeError: bad order/);
    assert.equal(got?.attemptsCount, 1);
    assert.equal(got?.deliveriesCount, 1);
    assert.ok(got?.failedAt instanceof Date);
    assert.equal(await outbox.dlq.get('999999999'), null);
    await assert.rejects(outbox.dlq.list({ cursor: 'garbage' }), (e) => e instanceof InvalidOptionError && e.option === 'cursor');
    await assert.rejects(outbox.dlq.list({ limit: 1001 }), (e) => e instanceof InvalidOptionError && e.option === 'limit');
    // Past bigint, or a queue PostgreSQL cannot compare: refused here, not as the server's 22003 / 22021.
    const tooBig = '9223372036854775808';
    await assert.rejects(outbox.dlq.get(tooBig), (e) => e instanceof InvalidOptionError && e.option === 'ids[0]');
    await assert.rejects(outbox.dlq.redrive([tooBig]), (e) => e instanceof InvalidOptionError && e.option === 'ids[0]');
    await assert.rejects(
      outbox.dlq.purge({ queue: 'q', throughId: tooBig }),
      (e) => e instanceof InvalidOptionError && e.option === 'filter.throughId',
    );
    await assert.rejects(outbox.dlq.list({ queue: 'a\u0000' }), (e) => e instanceof InvalidOptionError && e.option === 'queue');
    assert.equal(await outbox.dlq.get('9223372036854775807'), null, 'the largest bigint is an id');
  });

  test('failedBefore and failedAfter are strict at the millisecond a Date holds: a row is outside both of its own failedAt; the bounds are index conditions', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'q_ms');
    // failed_at keeps microseconds; failedAt (a Date) reads it to the millisecond (truncated).
    const times = ['.122999', '.123000', '.123456', '.123999', '.124000'].map((us) => `2026-01-01T00:00:00${us}Z`);
    await db.pool.query(
      `INSERT INTO q_ms_dlq (original_id, queue, payload, created_at, attempts_count, deliveries_count, failure_reason, failed_at)
       SELECT n, 'ms', '\\x00', now(), 1, 1, 'rejected', t::timestamptz FROM unnest($1::text[]) WITH ORDINALITY AS u(t, n)`,
      [times],
    );
    const all = (await outbox.dlq.list({ queue: 'ms' })).rows;
    const row = all.find((r) => r.originalId === '3')!;
    assert.equal(row.failedAt.toISOString(), '2026-01-01T00:00:00.123Z');
    const originals = (rows: readonly { originalId: string }[]) => rows.map((r) => r.originalId).sort();
    // Before, failedAfter compared microseconds: the row itself and its millisecond's neighbours were after it.
    assert.deepEqual(originals((await outbox.dlq.list({ queue: 'ms', failedAfter: row.failedAt })).rows), ['5']);
    assert.deepEqual(originals((await outbox.dlq.list({ queue: 'ms', failedBefore: row.failedAt })).rows), ['1']);
    const between = await outbox.dlq.list({
      queue: 'ms',
      failedAfter: new Date(row.failedAt.getTime() - 1),
      failedBefore: new Date(row.failedAt.getTime() + 1),
    });
    assert.deepEqual(originals(between.rows), ['2', '3', '4'], 'the millisecond between two strict bounds');
    // Redrive and purge select as list does.
    assert.deepEqual(await outbox.dlq.purge({ queue: 'ms', failedAfter: row.failedAt }), { purged: 1, remaining: 0 });
    assert.deepEqual(await outbox.dlq.redrive({ queue: 'ms', failedBefore: row.failedAt }, { delayMs: 3_600_000 }), {
      redriven: 1,
      keyBusy: 0,
    });
    assert.deepEqual(originals((await outbox.dlq.list({ queue: 'ms' })).rows), ['2', '3', '4']);

    // Either bound is an index condition (the (failed_at, id) index's, or the (queue, failed_at) one's
    // by a skip scan), not a filter over every row of the DLQ.
    for (const queue of ['a', 'b']) await seedDlq('q_ms', 5_000, queue, 'rejected', "now() - random() * interval '1 day'");
    await db.pool.query('ANALYZE q_ms_dlq');
    const sql = buildDlqSql(resolveSchemaNames('q_ms', undefined) as SchemaNames & { dlq: TableName });
    const minuteAgo = new Date(Date.now() - 60_000).toISOString();
    const dayAgo = new Date(Date.now() - 86_400_000 + 60_000).toISOString();
    for (const [before, after] of [
      [null, minuteAgo],
      [dayAgo, null],
    ]) {
      const { rows } = await db.pool.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(`EXPLAIN (FORMAT JSON) ${sql.count.text}`, [
        null,
        null,
        before,
        after,
        null,
        null,
      ]);
      const plan = nodes(rows[0]!['QUERY PLAN'][0].Plan);
      assert.ok(
        plan.some((n) => /failed_at [<>]/.test(n['Index Cond'] ?? '')),
        JSON.stringify(rows[0]!['QUERY PLAN'][0].Plan),
      );
    }
  });

  test('listPreviews: a bounded preview and the exact size instead of the body, never a split character; same rows and cursor as list', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'q_preview');
    outbox.subscribe(
      'big',
      () => {
        throw new RangeError('too big');
      },
      { retry: new NoRetry(), ...FAST_POLL },
    );
    outbox.start();
    // 1 MB: a JSON document, a text whose 3-byte characters straddle every cut, and bytes.
    const json = { blob: 'x'.repeat(1_000_000) };
    const text = `ab${'€'.repeat(400_000)}`;
    const bytes = Buffer.alloc(1_000_000, 0x41);
    await publishCommitted(outbox, db.pool, 'big', [json, text, bytes, 'short']);
    await log.waitFor('dlq_written', 4);

    const whole = (await outbox.dlq.list({ queue: 'big' })).rows;
    const page = await outbox.dlq.listPreviews({ queue: 'big', bodyPreviewBytes: 100 });
    assert.deepEqual(
      page.rows.map((r) => r.id),
      whole.map((r) => r.id),
      'the same rows in the same order as list()',
    );
    for (const [i, row] of page.rows.entries()) {
      const full = whole[i]!;
      assert.ok(!('body' in row) && !('payload' in row), 'no body, no payload on a preview row');
      assert.equal(row.payloadBytes, full.payload.length, 'the exact stored size');
      assert.ok(Buffer.byteLength(row.bodyPreview) <= 100, `${Buffer.byteLength(row.bodyPreview)} bytes`);
      assert.ok(full.payload.toString('utf8').startsWith(row.bodyPreview), 'a prefix of the body, no replacement character');
      assert.equal(row.bodyPreviewTruncated, full.payload.length > Buffer.byteLength(row.bodyPreview));
      assert.deepEqual(withoutBody(row), withoutBody(full), 'every other field as list() returns it');
    }
    const byBody = new Map(page.rows.map((r) => [r.payloadBytes, r]));
    assert.equal(byBody.get(Buffer.byteLength(JSON.stringify(json)))?.bodyPreview, JSON.stringify(json).slice(0, 100));
    // 2 + 3k bytes: 98 fits 32 euros, the 33rd would end at byte 101.
    assert.equal(byBody.get(Buffer.byteLength(text))?.bodyPreview, text.slice(0, 34));
    assert.equal(byBody.get(1_000_000)?.bodyPreview, 'A'.repeat(100));
    const short = byBody.get(5);
    assert.deepEqual([short?.bodyPreview, short?.bodyPreviewTruncated], ['short', false], 'a string is stored as its text');

    // Default 1 KiB (peek()'s); 0 is the size alone; the cursor pages through either method.
    const first = await outbox.dlq.listPreviews({ queue: 'big', limit: 2 });
    for (const row of first.rows) {
      assert.ok(Buffer.byteLength(row.bodyPreview) <= 1_024);
      assert.equal(row.bodyPreviewTruncated, row.payloadBytes > 1_024);
    }
    assert.ok(first.nextCursor !== null);
    const rest = await outbox.dlq.list({ queue: 'big', cursor: first.nextCursor });
    assert.deepEqual(
      [...first.rows, ...rest.rows].map((r) => r.id),
      whole.map((r) => r.id),
    );
    const sizes = await outbox.dlq.listPreviews({ queue: 'big', bodyPreviewBytes: 0 });
    assert.ok(sizes.rows.every((r) => r.bodyPreview === '' && r.bodyPreviewTruncated));
    for (const bad of [-1, 65_537, 1.5, '1024'] as unknown as number[]) {
      await assert.rejects(
        outbox.dlq.listPreviews({ bodyPreviewBytes: bad }),
        (e) => e instanceof InvalidOptionError && e.option === 'bodyPreviewBytes',
        String(bad),
      );
    }
    await outbox.stop();
  });

  test('redrive by ids and by filter: consumed by a running subscriber with fresh counters and the origin header, gone from the DLQ', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'q_redrive');
    let fail = true;
    const handled: Message[] = [];
    for (const queue of ['r1', 'r2']) {
      outbox.subscribe(
        queue,
        (message) => {
          if (fail) throw new TypeError('downstream down');
          handled.push(message);
        },
        { retry: new NoRetry(), ...FAST_POLL },
      );
    }
    outbox.start();
    await publishCommitted(outbox, db.pool, 'r1', [{ k: 1 }, { k: 2 }]);
    await publishCommitted(outbox, db.pool, 'r2', [{ k: 3 }]);
    await log.waitFor('dlq_written', 3);
    fail = false;

    const r1 = (await outbox.dlq.list({ queue: 'r1' })).rows;
    assert.equal(r1.length, 2);
    const first = r1[0]!;
    assert.deepEqual(await outbox.dlq.redrive([first.id]), { redriven: 1, keyBusy: 0 });
    await waitFor(() => handled.length === 1, { what: 'the redriven row is handled' });
    const message = handled[0]!;
    assert.deepEqual(message.body, first.body);
    assert.equal(message.headers[REDRIVEN_FROM_HEADER], first.id);
    assert.equal(message.headers[REDRIVEN_REASON_HEADER], 'retry_terminal');
    assert.equal(message.deliveriesCount, 1);
    assert.equal(message.attemptsCount, 0);
    assert.equal(await outbox.dlq.get(first.id), null);
    // Idempotent: the moved row is gone, a second call moves nothing.
    assert.deepEqual(await outbox.dlq.redrive([first.id]), { redriven: 0, keyBusy: 0 });

    assert.deepEqual(await outbox.dlq.redrive({ queue: 'r2' }), { redriven: 1, keyBusy: 0 });
    assert.deepEqual(await outbox.dlq.redrive({ reason: 'retry_terminal' }), { redriven: 1, keyBusy: 0 });
    await waitFor(() => handled.length === 3, { what: 'every redriven row is handled' });
    await waitFor(
      async () => (await remaining(db.pool, 'r1', 'q_redrive')) + (await remaining(db.pool, 'r2', 'q_redrive')) === 0,
    );
    assert.equal(await dlqCount('q_redrive'), 0);
    assert.deepEqual(
      handled.map((m) => m.deliveriesCount),
      [1, 1, 1],
    );
  });

  test('redrive with delayMs schedules the rows; a 2,500-row redrive runs in small batches to the end', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'q_bulk');
    await seedDlq('q_bulk', 2_500, 'bulk', 'max_deliveries');
    await seedDlq('q_bulk', 7, 'other', 'max_deliveries');
    assert.deepEqual(await outbox.dlq.redrive({ queue: 'bulk' }, { batchSize: 300, delayMs: 3_600_000 }), {
      redriven: 2_500,
      keyBusy: 0,
    });
    assert.equal(await dlqCount('q_bulk', 'bulk'), 0);
    assert.equal(await dlqCount('q_bulk', 'other'), 7);
    const { rows } = await db.pool.query<{ n: string; future: string; fresh: string; distinct_origins: string }>(
      `SELECT count(*) AS n, count(*) FILTER (WHERE next_attempt_at > now() + interval '50 minutes') AS future,
         count(*) FILTER (WHERE attempts_count = 0 AND deliveries_count = 0 AND first_attempt_at IS NULL AND last_attempt_at IS NULL) AS fresh,
         count(DISTINCT headers ->> '${REDRIVEN_FROM_HEADER}') AS distinct_origins
       FROM q_bulk WHERE queue = 'bulk'`,
    );
    assert.deepEqual(rows[0], { n: '2500', future: '2500', fresh: '2500', distinct_origins: '2500' });
    await assert.rejects(
      outbox.dlq.redrive({ queue: 'other' }, { batchSize: 0 }),
      (e) => e instanceof InvalidOptionError && e.option === 'batchSize',
    );
  });

  test('a due redrive NOTIFYs its queues (other processes wake); a delayed one announces when its rows are due', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'q_notify');
    await seedDlq('q_notify', 3, 'due', 'rejected');
    await seedDlq('q_notify', 3, 'later', 'rejected');
    const listener = await listen(db.url, outbox.channel);
    try {
      assert.deepEqual(await outbox.dlq.redrive({ queue: 'later' }, { delayMs: 60_000 }), { redriven: 3, keyBusy: 0 });
      assert.deepEqual(await outbox.dlq.redrive({ queue: 'due' }), { redriven: 3, keyBusy: 0 });
      await listener.waitFor('due');
      assert.equal(listener.payloads.length, 2, JSON.stringify(listener.payloads));
      const announced = readSignal(listener.payloads[0] ?? '');
      assert.equal(announced.kind, 'due');
      assert.equal(announced.queue, 'later');
      // The time left, rounded up to 10 ms (channel-signal.ts).
      assert.ok(announced.kind === 'due' && announced.inMs > 59_000 && announced.inMs <= 60_010, JSON.stringify(announced));
      assert.equal(listener.payloads[1], 'due');
    } finally {
      await listener.close();
    }
  });

  test("a delayed redrive wakes the redriving process's own consumer when the rows are due, LISTEN or not", async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'q_redrive_later', { listen: false });
    await seedDlq('q_redrive_later', 2, 'later', 'rejected');
    const handledAt = handlerStartsOf(outbox, 'later');
    outbox.start();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const redrivenAt = Date.now();
    assert.deepEqual(await outbox.dlq.redrive({ queue: 'later' }, { delayMs: 600 }), { redriven: 2, keyBusy: 0 });
    await waitFor(() => handledAt.length === 2, { what: 'the redriven rows (the poll is 30 s)', timeoutMs: 8_000 });
    const waited = Math.min(...handledAt) - redrivenAt;
    assert.ok(waited >= 590 && waited < 2_600, `ran ${waited} ms after the redrive`);
  });

  test('concurrent redrives of one filter: every row ends in the outbox exactly once, none stays in the DLQ', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'q_race');
    await seedDlq('q_race', 1_200, 'race', 'max_deliveries');
    const results = await Promise.all(
      [1, 2, 3].map(() => outbox.dlq.redrive({ queue: 'race' }, { batchSize: 50, delayMs: 3_600_000 })),
    );
    assert.equal(
      results.reduce((sum, r) => sum + r.redriven, 0),
      1_200,
    );
    assert.equal(await dlqCount('q_race'), 0);
    const { rows } = await db.pool.query<{ n: string; origins: string }>(
      `SELECT count(*) AS n, count(DISTINCT headers ->> '${REDRIVEN_FROM_HEADER}') AS origins FROM q_race`,
    );
    assert.deepEqual(rows[0], { n: '1200', origins: '1200' });
  });

  test('keyWaitMs counts from the end of the first pass: a redrive whose walk outlasts it still comes back for a busy key', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'q_key_wait');
    await keyedDeadLetters('q_key_wait', ['b', null, null]);
    const holder = await db.pool.connect();
    try {
      await holder.query('BEGIN');
      // An application transaction publishing under key b holds b's lock until it ends.
      await outbox.publish(holder, 'q', 'held', { orderingKey: 'b' });
      let batches = 0;
      const result = await outbox.dlq.redrive(
        { queue: 'q' },
        {
          batchSize: 1,
          delayMs: 3_600_000,
          keyWaitMs: 300,
          // A slow walk (pacing): the first pass takes over 600 ms, longer than keyWaitMs. The key
          // is freed as it ends. Before, the wait was counted from the call's start and was used
          // up by then: the busy row was never tried again.
          onBatch: async () => {
            batches += 1;
            await new Promise((resolve) => setTimeout(resolve, 250));
            if (batches === 3) await holder.query('COMMIT');
          },
        },
      );
      assert.deepEqual(result, { redriven: 3, keyBusy: 0 });
    } finally {
      holder.release();
    }
    assert.equal(await dlqCount('q_key_wait'), 0);
  });

  test("a redrive's held keys are bounded: past the cap its pass starts again from the first row, each key still in order", async () => {
    const table = 'q_held_cap';
    const { outbox } = await migratedOutbox(newOutbox, db.pool, table);
    // Another redrive holds the rows of keys a to f (locked, as its batch would); between them, rows
    // it does not hold; last, a's second row, which must wait for a's first.
    const ids = await keyedDeadLetters(table, ['a', 'p', 'b', 'q', 'c', 'r', 'd', 's', 'e', 't', 'f', 'u', 'a']);
    const locked = ids.filter((_, i) => i % 2 === 0 && i < 12);
    const names = resolveSchemaNames(table, undefined) as SchemaNames & { dlq: TableName };
    const sql = buildDlqSql(names);
    // What each redrive statement was sent: the number of held (queue, key) pairs, $11.
    const shipped: number[] = [];
    class Recording extends StatementRunner {
      override async run<R extends pg.QueryResultRow>(statement: Statement, values: unknown[]): Promise<pg.QueryResult<R>> {
        if (statement === sql.redrive) shipped.push((values[10] as string[]).length);
        return await super.run<R>(statement, values);
      }
    }
    // A cap of 4 pairs instead of HELD_KEYS_CAP's 10,000 (an internal knob, not the Outbox's API).
    const dlq = new DeadLetters({
      db: new Recording(db.pool, true, 5_000),
      table: names.dlq,
      sql,
      channel: outbox.channel,
      signalLocal: () => undefined,
      heldKeysCap: 4,
    });
    const other = await db.pool.connect();
    try {
      await other.query('BEGIN');
      await other.query(`SELECT id FROM ${table}_dlq WHERE id = ANY($1::bigint[]) FOR UPDATE`, [locked]);
      let released = false;
      const result = await dlq.redrive(
        { queue: 'q' },
        {
          batchSize: 1,
          delayMs: 3_600_000,
          keyWaitMs: 10_000,
          // The other redrive ends (its rows left behind) once a batch finds nothing left to move.
          onBatch: async (rows) => {
            if (rows > 0 || released) return;
            released = true;
            await other.query('ROLLBACK');
          },
        },
      );
      assert.deepEqual(result, { redriven: 13, keyBusy: 0 });
    } finally {
      other.release();
    }
    // Before, every batch of the pass added the keys it skipped and sent them all (1, 2, … 6 here;
    // hundreds of thousands for two redrives leapfrogging through a large DLQ).
    assert.ok(Math.max(...shipped) <= 4, `held pairs sent: ${shipped.join(', ')}`);
    const { rows } = await db.pool.query<{ body: string }>(
      `SELECT convert_from(payload, 'UTF8') AS body FROM ${table} WHERE ordering_key = 'a' ORDER BY id`,
    );
    assert.deepEqual(
      rows.map((row) => row.body),
      ['dead 1 a', 'dead 13 a'],
      "a's rows in order",
    );
    assert.equal(await dlqCount(table), 0);
  });

  test('a filter redrive moves the rows the DLQ held when it started, each once: rows that die again during it stay', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'q_redie');
    await seedDlq('q_redie', 300, 'q', 'rejected');
    // The downstream is still down: every redriven row dies again, with a new (higher) DLQ id that
    // the same filter selects.
    outbox.subscribe(
      'q',
      (_message, ctx) => {
        ctx.reject('still broken');
      },
      FAST_POLL,
    );
    outbox.start();
    const batches: number[] = [];
    const result = await outbox.dlq.redrive(
      { queue: 'q' },
      {
        batchSize: 50,
        // Deterministic: batch 1's rows are back in the DLQ before the loop picks its next batch.
        onBatch: async (rows) => {
          batches.push(rows);
          if (batches.length === 1) await log.waitFor('dlq_written', 50);
        },
      },
    );
    assert.deepEqual(result, { redriven: 300, keyBusy: 0 }, 'never more than the DLQ held');
    assert.deepEqual(batches, [50, 50, 50, 50, 50, 50, 0]);
    await log.waitFor('dlq_written', 300);
    await outbox.stop();
    assert.equal(log.of('dlq_written').length, 300, 'each row redriven (and dead) once');
    const { rows } = await db.pool.query<{ n: string; origins: string }>(
      `SELECT count(*) AS n, count(DISTINCT headers ->> '${REDRIVEN_FROM_HEADER}') AS origins FROM q_redie_dlq`,
    );
    assert.deepEqual(rows[0], { n: '300', origins: '300' });
  });

  test('a filter purge deletes the rows the DLQ held when it started: rows that die during it stay', async () => {
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'q_purge_live');
    await seedDlq('q_purge_live', 300, 'p', 'rejected');
    outbox.subscribe(
      'p',
      () => {
        throw new RangeError('still broken');
      },
      { retry: new NoRetry(), ...FAST_POLL },
    );
    outbox.start();
    const batches: number[] = [];
    const result = await outbox.dlq.purge(
      { queue: 'p' },
      {
        batchSize: 50,
        // After the operator confirmed, 20 more die: the purge was not asked to delete them.
        onBatch: async (rows) => {
          batches.push(rows);
          if (batches.length === 1) {
            await publishCommitted(
              outbox,
              db.pool,
              'p',
              Array.from({ length: 20 }, (_, n) => ({ n })),
            );
            await log.waitFor('dlq_written', 20);
          }
        },
      },
    );
    assert.deepEqual(result, { purged: 300, remaining: 0 });
    assert.deepEqual(batches, [50, 50, 50, 50, 50, 50, 0]);
    assert.equal(await dlqCount('q_purge_live', 'p'), 20, 'the rows that died during the purge stay');
    // A pacing onBatch that rejects stops the call like a signal: the batch before it stays done.
    await assert.rejects(
      outbox.dlq.purge({ queue: 'p' }, { batchSize: 5, onBatch: () => Promise.reject(new Error('stop pacing')) }),
      /stop pacing/,
    );
    assert.equal(await dlqCount('q_purge_live', 'p'), 15);
    await outbox.stop();
  });

  test('a purge comes back for rows a concurrent redrive held, and says how many it could not delete', async () => {
    const table = 'q_purge_held';
    const { outbox } = await migratedOutbox(newOutbox, db.pool, table);
    await seedDlq(table, 10, 'p', 'rejected');
    // Another redrive's batch: it holds rows locked (SKIP LOCKED passes them by), then leaves them
    // (their key busy) instead of moving them.
    const holdRows = async (client: pg.PoolClient, n: number) => {
      await client.query('BEGIN');
      await client.query(`SELECT id FROM ${table}_dlq WHERE queue = 'p' ORDER BY id LIMIT $1 FOR UPDATE`, [n]);
    };
    const other = await db.pool.connect();
    try {
      // 1. Let go of while the purge ends its pass: the purge looks again and deletes them.
      await holdRows(other, 3);
      let released = false;
      const result = await outbox.dlq.purge(
        { queue: 'p' },
        {
          batchSize: 4,
          onBatch: async (rows) => {
            if (rows > 0 || released) return;
            released = true;
            await other.query('ROLLBACK');
          },
        },
      );
      // Before, the pass ended at the first batch that deleted nothing: { purged: 7 }, 3 left unsaid.
      assert.deepEqual(result, { purged: 10, remaining: 0 });
      assert.equal(await dlqCount(table), 0);

      // 2. Held throughout: what is left is said.
      await seedDlq(table, 10, 'p', 'rejected');
      await holdRows(other, 2);
      const started = Date.now();
      assert.deepEqual(await outbox.dlq.purge({ queue: 'p' }), { purged: 8, remaining: 2 });
      const waited = Date.now() - started;
      assert.ok(waited >= 1_900 && waited < 8_000, `looked again for ${waited} ms (PURGE_WAIT_MS)`);
      await other.query('ROLLBACK');
      assert.equal(await dlqCount(table), 2);
      assert.deepEqual(await outbox.dlq.purge({ queue: 'p' }), { purged: 2, remaining: 0 });
    } finally {
      other.release();
    }
  });

  test('purge by filter in batches; an empty filter is refused; ids are validated', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'q_purge');
    await seedDlq('q_purge', 250, 'p', 'rejected');
    await seedDlq('q_purge', 5, 'keep', 'rejected');
    for (const call of [() => outbox.dlq.purge({}), () => outbox.dlq.redrive({}), () => outbox.dlq.purge({ all: false })]) {
      await assert.rejects(
        call(),
        (e) => e instanceof InvalidOptionError && e.option === 'filter' && /all: true/.test(e.fix ?? ''),
      );
    }
    await assert.rejects(
      outbox.dlq.redrive(['1; DROP TABLE x']),
      (e) => e instanceof InvalidOptionError && e.option === 'ids[0]',
    );
    // Review finding: unknown keys were ignored, so `{ queue, ids }` purged the whole queue and a
    // misspelled bound selected without it. Each is refused, naming the key; nothing is deleted.
    const unknownKey = (option: string) => (e: unknown) => e instanceof InvalidOptionError && e.option === option;
    await assert.rejects(outbox.dlq.purge({ queue: 'p', ids: ['1'] } as never), unknownKey('filter.ids'));
    await assert.rejects(outbox.dlq.redrive({ queue: 'p', failedafter: new Date() } as never), unknownKey('filter.failedafter'));
    await assert.rejects(outbox.dlq.purge({ queue: 'p', olderThanMs: '14' } as never), unknownKey('filter.olderThanMs'));
    await assert.rejects(outbox.dlq.purge({ queue: 'p' }, { batchsize: 40 } as never), unknownKey('batchsize'));
    await assert.rejects(outbox.dlq.redrive({ queue: 'p' }, { delay: 1 } as never), unknownKey('delay'));
    await assert.rejects(outbox.dlq.list({ queue: 'p', olderThanMs: 1 } as never), unknownKey('olderThanMs'));
    await assert.rejects(outbox.dlq.listPreviews({ bodyPreview: 1 } as never), unknownKey('bodyPreview'));
    await assert.rejects(outbox.dlq.getPreview('1', { preview: 1 } as never), unknownKey('preview'));
    await assert.rejects(outbox.dlq.enforceRetention(86_400_000, { size: 1 } as never), unknownKey('size'));
    await assert.rejects(outbox.dlq.purge({ queue: 'p' }, null as never), unknownKey('options'));
    assert.equal(await dlqCount('q_purge'), 255);
    assert.deepEqual(await outbox.dlq.purge({ queue: 'p', olderThanMs: 1 }, { batchSize: 40 }), { purged: 250, remaining: 0 });
    assert.equal(await dlqCount('q_purge'), 5);
    assert.deepEqual(await outbox.dlq.purge({ all: true }), { purged: 5, remaining: 0 });
    assert.equal(await dlqCount('q_purge'), 0);
  });

  test('throughId: only the rows up to the last id the operator saw; lastId() is the DLQ highest id, 0 when empty', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'q_through');
    assert.equal(await outbox.dlq.lastId(), '0');
    await seedDlq('q_through', 10, 'seen', 'rejected');
    const seen = await outbox.dlq.lastId();
    assert.match(seen, /^[1-9][0-9]*$/);
    await seedDlq('q_through', 3, 'seen', 'rejected'); // died after the operator looked
    assert.deepEqual(await outbox.dlq.purge({ queue: 'seen', throughId: seen }), { purged: 10, remaining: 0 });
    assert.equal(await dlqCount('q_through'), 3);
    assert.deepEqual(await outbox.dlq.redrive({ queue: 'seen', throughId: seen }), { redriven: 0, keyBusy: 0 });
    assert.deepEqual(await outbox.dlq.purge({ all: true, throughId: '0' }), { purged: 0, remaining: 0 });
    for (const throughId of ['-1', '1.5', 'x', 7 as unknown as string])
      await assert.rejects(
        outbox.dlq.purge({ all: true, throughId }),
        (e) => e instanceof InvalidOptionError && e.option === 'filter.throughId',
        `throughId ${JSON.stringify(throughId)}`,
      );
    assert.equal(await dlqCount('q_through'), 3);
  });

  test('enforceRetention and olderThanMs: only rows older than the line by the database clock, idempotent, validated', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'q_retention');
    await seedDlq('q_retention', 300, 'old', 'max_deliveries', "now() - interval '30 days'");
    await seedDlq('q_retention', 40, 'old', 'rejected', "now() - interval '3 hours'");
    await seedDlq('q_retention', 20, 'young', 'rejected', "now() - interval '3 hours'");
    await seedDlq('q_retention', 10, 'young', 'rejected');
    const batches: number[] = [];
    const before = Date.now();
    const result = await outbox.dlq.enforceRetention(14 * 86_400_000, { batchSize: 64, onBatch: (n) => batches.push(n) });
    assert.equal(result.purged, 300);
    // Ran in batches to the end: 64 × 4 + 44, then one that found nothing.
    assert.deepEqual(batches, [64, 64, 64, 64, 44, 0]);
    const lineAgeMs = before - result.failedBefore.getTime();
    assert.ok(Math.abs(lineAgeMs - 14 * 86_400_000) < 60_000, `the line is 14 days back by the database clock (${lineAgeMs} ms)`);
    assert.equal(await dlqCount('q_retention'), 70);
    assert.equal((await outbox.dlq.enforceRetention(14 * 86_400_000)).purged, 0, 'a second run finds nothing');
    // As a purge filter, with the others: 2 hours back, one queue, one reason.
    assert.deepEqual(await outbox.dlq.purge({ olderThanMs: 2 * 3_600_000, queue: 'young' }), { purged: 20, remaining: 0 });
    assert.deepEqual(await outbox.dlq.purge({ olderThanMs: 60_000, reason: 'max_deliveries' }), { purged: 0, remaining: 0 });
    // With failedBefore too, the earlier line applies: 4 hours back keeps the 3-hour-old rows.
    const fourHours = new Date(Date.now() - 4 * 3_600_000);
    assert.deepEqual(await outbox.dlq.purge({ olderThanMs: 60_000, failedBefore: fourHours }), { purged: 0, remaining: 0 });
    assert.equal(await dlqCount('q_retention', 'old'), 40);
    assert.deepEqual(await outbox.dlq.redrive({ olderThanMs: 3_600_000 }, { delayMs: 3_600_000 }), { redriven: 40, keyBusy: 0 });
    assert.equal(await dlqCount('q_retention'), 10);

    for (const bad of [14, 59_999, Number.NaN, '14 days', -1] as unknown as number[]) {
      await assert.rejects(
        outbox.dlq.enforceRetention(bad),
        (e) => e instanceof InvalidOptionError && e.option === 'maxAgeMs' && /14d/.test(e.fix ?? ''),
        String(bad),
      );
    }
    await assert.rejects(
      outbox.dlq.purge({ olderThanMs: 0 }),
      (e) => e instanceof InvalidOptionError && e.option === 'filter.olderThanMs',
    );
    await assert.rejects(
      outbox.dlq.purge({ all: true }, { signal: 'stop' as unknown as AbortSignal }),
      (e) => e instanceof InvalidOptionError && e.option === 'signal',
    );
    assert.equal(await dlqCount('q_retention'), 10, 'refused calls deleted nothing');
  });

  test('an interrupted redrive (aborted between batches, or cancelled inside one) leaves every row in exactly one table; a re-run finishes', async () => {
    // A long client-side bound: on a loaded machine the wait for the cancel below must not end by
    // queryTimeoutMs first (a different error than the cancel's 57014).
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'q_interrupt', { queryTimeoutMs: 120_000 });
    await seedDlq('q_interrupt', 5_000, 'i', 'max_deliveries');
    const inBoth = async () => {
      const { rows } = await db.pool.query<{ dlq: string; outbox: string; origins: string; overlap: string }>(
        `SELECT (SELECT count(*) FROM q_interrupt_dlq) AS dlq, (SELECT count(*) FROM q_interrupt) AS outbox,
           (SELECT count(DISTINCT headers ->> '${REDRIVEN_FROM_HEADER}') FROM q_interrupt) AS origins,
           (SELECT count(*) FROM q_interrupt o JOIN q_interrupt_dlq d ON d.id::text = o.headers ->> '${REDRIVEN_FROM_HEADER}') AS overlap`,
      );
      return rows[0];
    };

    // 1. Stopped after 3 batches by its signal: those 3 stay done.
    const controller = new AbortController();
    let batches = 0;
    await assert.rejects(
      outbox.dlq.redrive(
        { queue: 'i' },
        {
          batchSize: 400,
          delayMs: 3_600_000,
          signal: controller.signal,
          onBatch: () => {
            batches += 1;
            if (batches === 3) controller.abort(new Error('operator stop'));
          },
        },
      ),
      /operator stop/,
    );
    assert.deepEqual(await inBoth(), { dlq: '3800', outbox: '1200', origins: '1200', overlap: '0' });

    // 2. Cancelled inside a batch: the statement has deleted its DLQ rows and waits to insert (a
    // SHARE lock on the outbox holds it there); the cancel rolls the whole batch back.
    const blocker = await db.pool.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE q_interrupt IN SHARE MODE');
      // Settled into a value at once: the cancel's rejection may land before the assertion below
      // awaits it, and an unobserved rejection fails the test run.
      const stuck = outbox.dlq.redrive({ queue: 'i' }, { batchSize: 1_000, delayMs: 3_600_000 }).then(
        () => undefined,
        (error: unknown) => error,
      );
      let pid: number | undefined;
      await waitFor(
        async () => {
          const { rows } = await db.pool.query<{ pid: number }>(
            `SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'WITH picked AS%q_interrupt%'`,
          );
          pid = rows[0]?.pid;
          return pid !== undefined;
        },
        { what: 'the redrive batch waits for the outbox lock' },
      );
      await db.pool.query('SELECT pg_cancel_backend($1)', [pid]);
      assert.equal(((await stuck) as { code?: string } | undefined)?.code, '57014', 'the batch was cancelled');
    } finally {
      await blocker.query('ROLLBACK');
      blocker.release();
    }
    assert.deepEqual(await inBoth(), { dlq: '3800', outbox: '1200', origins: '1200', overlap: '0' });

    // 3. The same call again finishes the rest: every row once in the outbox, none left behind.
    assert.deepEqual(await outbox.dlq.redrive({ queue: 'i' }, { batchSize: 400, delayMs: 3_600_000 }), {
      redriven: 3_800,
      keyBusy: 0,
    });
    assert.deepEqual(await inBoth(), { dlq: '0', outbox: '5000', origins: '5000', overlap: '0' });
  });

  test('listing every queue newest first walks the (failed_at, id) index: no sort of the whole DLQ', async () => {
    await migratedOutbox(newOutbox, db.pool, 'q_plan');
    for (const queue of ['a', 'b', 'c', 'd'])
      await seedDlq('q_plan', 5_000, queue, 'rejected', "now() - random() * interval '1 day'");
    await db.pool.query('ANALYZE q_plan_dlq');
    const sql = buildDlqSql(resolveSchemaNames('q_plan', undefined) as SchemaNames & { dlq: TableName });
    // The first page, and a later one (after a cursor), with no filter: as the dashboard asks.
    for (const cursor of [
      [null, null],
      [new Date().toISOString().replace('Z', ''), '1000'],
    ]) {
      const { rows } = await db.pool.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(`EXPLAIN (FORMAT JSON) ${sql.list.text}`, [
        null,
        null,
        null,
        null,
        null,
        null,
        ...cursor,
        50,
        8 * 1024 * 1024,
      ]);
      const plan = nodes(rows[0]!['QUERY PLAN'][0].Plan);
      assert.ok(
        plan.some((n) => n['Index Name'] === 'q_plan_dlq_time_idx'),
        plan.map((n) => n['Node Type']).join(', '),
      );
      assert.ok(!plan.some((n) => n['Node Type'] === 'Sort'), 'no sort');
    }
  });

  test('without a DLQ table, outbox.dlq throws InvalidOptionError naming dlqTable', async () => {
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'q_nodlq', { dlqTable: false });
    assert.throws(
      () => outbox.dlq,
      (e) => e instanceof InvalidOptionError && e.option === 'dlqTable' && /dlqTable: false/.test(e.fix ?? ''),
    );
  });
});
