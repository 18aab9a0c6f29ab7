import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import pg from 'pg';

import { startDashboard } from '../../src/dashboard/index.js';
import { InvalidOptionError, type Outbox } from '../../src/index.js';
import { ByteCountProxy } from '../support/byte-count-proxy.js';
import { get } from '../support/dashboard-client.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { migratedOutbox } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { txoutboxBin, txoutboxMain } from '../support/txoutbox-bin.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const TABLE = 'budget';
const MiB = 1024 * 1024;
/** Each big body: 3 MiB of JSON (random base64 text, so compression cannot hide it). */
const BIG = 3 * MiB;
/** What a page holds by default: DEFAULT_MAX_PAGE_BYTES. */
const PAGE = 8 * MiB;
/** What `--json` shows of a body. */
const JSON_BODY = 65_536;
const HOUR = 3_600_000;

function bigBody(): { blob: string } {
  // {"blob":""} is 11 bytes: the stored JSON is exactly BIG bytes.
  return {
    blob: randomBytes(BIG)
      .toString('base64')
      .slice(0, BIG - 11),
  };
}

interface Walked {
  readonly ids: string[];
  readonly pages: string[][];
}

/** Every page until nextCursor is null. */
async function walk(
  read: (cursor: string | undefined) => Promise<{ rows: { id: string }[]; nextCursor: string | null }>,
): Promise<Walked> {
  const pages: string[][] = [];
  let cursor: string | undefined;
  for (;;) {
    const page = await read(cursor);
    pages.push(page.rows.map((r) => r.id));
    if (page.nextCursor === null) return { ids: pages.flat(), pages };
    assert.ok(pages.length < 100, 'the walk ends');
    cursor = page.nextCursor;
  }
}

describe('page byte budget: list, peek and their previews read a bounded page, the CLI a bounded body', () => {
  let proxy: ByteCountProxy;
  let pool: pg.Pool;
  let outbox: Outbox;
  /** DLQ ids newest first: one small dead letter, then six of 3 MiB. */
  const dlqIds: string[] = [];
  /** Pending ids oldest first: a small ready row, three ready 3 MiB rows, three scheduled ones. */
  const peekIds: string[] = [];
  const payloads = new Map<string, Buffer>();

  before(async () => {
    await migratedOutbox(newOutbox, db.pool, TABLE);
    const insertDead = async (body: unknown, secondsAgo: number): Promise<void> => {
      const payload = Buffer.from(JSON.stringify(body));
      const { rows } = await db.pool.query<{ id: string }>(
        `INSERT INTO ${TABLE}_dlq (original_id, queue, payload, headers, created_at, attempts_count, deliveries_count,
           failure_reason, last_exception, last_exception_type, failed_at)
         VALUES (1, 'big', $1, '{"content-type":"application/json"}', now(), 1, 1, 'rejected', 'Error: too big', 'Error',
           now() - $2::int * interval '1 second')
         RETURNING id::text`,
        [payload, secondsAgo],
      );
      dlqIds.push(rows[0]!.id);
      payloads.set(`dlq:${rows[0]!.id}`, payload);
    };
    await insertDead({ small: true }, 0);
    for (let i = 1; i <= 6; i += 1) await insertDead(bigBody(), i);

    // Through the Outbox's publish, one transaction each: oldest first is publish order.
    const publish = async (body: unknown, activateInMs?: number): Promise<void> => {
      const id = await inTransaction(db.pool, (client) =>
        outbox.publish(client, 'big', body, activateInMs === undefined ? {} : { activateInMs }),
      );
      peekIds.push(id ?? '');
      payloads.set(`peek:${id ?? ''}`, Buffer.from(JSON.stringify(body)));
    };
    proxy = await ByteCountProxy.start(db.url);
    pool = new pg.Pool({ connectionString: proxy.url, max: 2 });
    outbox = (await migratedOutbox(newOutbox, pool, TABLE)).outbox;
    await publish({ small: true });
    for (let i = 0; i < 3; i += 1) await publish(bigBody());
    for (let i = 0; i < 3; i += 1) await publish(bigBody(), HOUR + i * 1_000);
  });

  after(async () => {
    await outbox.stop();
    await pool.end();
    await proxy.close();
  });

  test('list(): a page stops before the row that would pass 8 MiB of stored bytes; its cursor walks every row once', async () => {
    proxy.reset();
    const first = await outbox.dlq.list();
    const wire = proxy.bytesFromServer;
    // bytea travels as hex: 2 × 6 MiB. All seven rows were 2 × 18 MiB.
    assert.ok(wire < 2 * PAGE, `${wire} bytes on the wire for one page`);
    // small + 3 MiB + 3 MiB; a third 3 MiB row would make 9 MiB.
    assert.deepEqual(
      first.rows.map((r) => r.id),
      dlqIds.slice(0, 3),
    );
    assert.equal(first.limitedByBytes, true);
    assert.ok(first.nextCursor !== null);
    assert.ok(first.rows.reduce((sum, r) => sum + r.payload.length, 0) <= PAGE, 'the page holds at most maxPageBytes of payload');
    for (const row of first.rows) assert.deepEqual(row.payload, payloads.get(`dlq:${row.id}`));

    const walked = await walk((cursor) => outbox.dlq.list(cursor === undefined ? {} : { cursor }));
    assert.deepEqual(walked.ids, dlqIds, 'every row once, newest first');
    assert.deepEqual(
      walked.pages.map((p) => p.length),
      [3, 2, 2],
    );
    // A budget smaller than any row: one row per page (the first always comes), none skipped.
    const single = await walk((cursor) => outbox.dlq.list({ maxPageBytes: 1, ...(cursor === undefined ? {} : { cursor }) }));
    assert.deepEqual(single.ids, dlqIds);
    assert.equal(single.pages.length, dlqIds.length);
    // A page that fits: not limited, and the last one.
    const all = await outbox.dlq.list({ maxPageBytes: 32 * MiB });
    assert.equal(all.rows.length, 7);
    assert.equal(all.limitedByBytes, false);
    assert.equal(all.nextCursor, null);
  });

  test('listPreviews(): the database sends each body’s head, the page its size, and payloadHead holds the bytes', async () => {
    proxy.reset();
    const page = await outbox.dlq.listPreviews({ bodyPreviewBytes: JSON_BODY });
    assert.ok(proxy.bytesFromServer < 2 * MiB, `${proxy.bytesFromServer} bytes on the wire`);
    assert.deepEqual(
      page.rows.map((r) => r.id),
      dlqIds,
    );
    assert.equal(page.limitedByBytes, false);
    for (const row of page.rows) {
      const payload = payloads.get(`dlq:${row.id}`)!;
      assert.equal(row.payloadBytes, payload.length);
      assert.deepEqual(row.payloadHead, payload.subarray(0, JSON_BODY));
      assert.equal(row.bodyPreviewTruncated, payload.length > JSON_BODY);
    }
    // Each preview row counts its head (65,537 bytes), exception and headers: the second big one passes 100,000.
    const cut = await outbox.dlq.listPreviews({ bodyPreviewBytes: JSON_BODY, maxPageBytes: 100_000 });
    assert.deepEqual(
      cut.rows.map((r) => r.id),
      dlqIds.slice(0, 2),
    );
    assert.equal(cut.limitedByBytes, true);
    const walked = await walk((cursor) =>
      outbox.dlq.listPreviews({
        bodyPreviewBytes: JSON_BODY,
        maxPageBytes: 100_000,
        ...(cursor === undefined ? {} : { cursor }),
      }),
    );
    assert.deepEqual(walked.ids, dlqIds);
  });

  test('peek(): the budget carries across states; a state whose first row does not fit ends the page, and the cursor resumes there', async () => {
    proxy.reset();
    const first = await outbox.peek('big');
    const wire = proxy.bytesFromServer;
    // base64 on the wire: 4/3 × 6 MiB. All seven rows were 4/3 × 18 MiB.
    assert.ok(wire < 1.5 * PAGE, `${wire} bytes on the wire for one page`);
    assert.deepEqual(
      first.rows.map((r) => r.id),
      peekIds.slice(0, 3),
    );
    assert.equal(first.limitedByBytes, true);
    for (const row of first.rows) assert.deepEqual(row.payload, payloads.get(`peek:${row.id}`));

    const walked = await walk((cursor) => outbox.peek('big', cursor === undefined ? {} : { cursor }));
    assert.deepEqual(walked.ids, peekIds, 'every row once, ready then scheduled');
    // 4 MiB: after the third ready row, the first scheduled one (3 MiB) does not fit in what is left.
    const four = await walk((cursor) =>
      outbox.peek('big', { maxPageBytes: 4 * MiB, ...(cursor === undefined ? {} : { cursor }) }),
    );
    assert.deepEqual(four.pages, [peekIds.slice(0, 2), ...peekIds.slice(2).map((id) => [id])]);
    const scheduled = await walk((cursor) =>
      outbox.peek('big', { state: 'scheduled', maxPageBytes: 7 * MiB, ...(cursor === undefined ? {} : { cursor }) }),
    );
    assert.deepEqual(scheduled.pages, [peekIds.slice(4, 6), peekIds.slice(6)]);
  });

  test('peekPreviews(): bodyPreviewBytes up to 64 KiB, payloadHead, and the same pages as peek() under a budget', async () => {
    proxy.reset();
    const page = await outbox.peekPreviews('big', { bodyPreviewBytes: JSON_BODY });
    assert.ok(proxy.bytesFromServer < 2 * MiB, `${proxy.bytesFromServer} bytes on the wire`);
    assert.deepEqual(
      page.rows.map((r) => r.id),
      peekIds,
    );
    for (const row of page.rows) {
      const payload = payloads.get(`peek:${row.id}`)!;
      assert.equal(row.payloadBytes, payload.length);
      assert.deepEqual(row.payloadHead, payload.subarray(0, JSON_BODY));
      assert.equal(row.bodyPreviewTruncated, payload.length > JSON_BODY);
    }
    const walked = await walk((cursor) =>
      outbox.peekPreviews('big', {
        bodyPreviewBytes: JSON_BODY,
        maxPageBytes: 100_000,
        ...(cursor === undefined ? {} : { cursor }),
      }),
    );
    assert.deepEqual(walked.ids, peekIds);
    assert.deepEqual(walked.pages[0], peekIds.slice(0, 2));
  });

  test('txoutbox dlq list --json: each body cut at 64 KiB with payloadBytes and truncated; kilobytes on the wire', async () => {
    proxy.reset();
    const run = await txoutboxBin(['dlq', 'list', '--json', '--table', TABLE], { env: { DATABASE_URL: proxy.url } });
    assert.ok(proxy.bytesFromServer < 2 * MiB, `${proxy.bytesFromServer} bytes on the wire`);
    assert.equal(run.code, 0, run.err);
    const page = JSON.parse(run.out) as { rows: Record<string, unknown>[]; nextCursor: string | null; limitedByBytes: boolean };
    assert.deepEqual(
      page.rows.map((r) => r.id),
      dlqIds,
    );
    assert.equal(page.nextCursor, null);
    assert.equal(page.limitedByBytes, false);
    const [small, big] = page.rows;
    assert.deepEqual(small?.body, { small: true });
    assert.equal(small?.truncated, false);
    assert.equal(small?.payloadBytes, payloads.get(`dlq:${dlqIds[0]!}`)!.length);
    assert.deepEqual(Buffer.from(small?.payload as string, 'base64'), payloads.get(`dlq:${dlqIds[0]!}`));
    assert.equal(big?.truncated, true);
    assert.equal(big?.payloadBytes, BIG);
    assert.equal(big?.body, null, 'a cut JSON body does not decode');
    assert.deepEqual(Buffer.from(big?.payload as string, 'base64'), payloads.get(`dlq:${dlqIds[1]!}`)!.subarray(0, JSON_BODY));
    assert.equal(big?.lastExceptionType, 'Error');
  });

  test('txoutbox queue peek: --json cuts each body at 64 KiB; the table shows each body’s size', async () => {
    proxy.reset();
    const run = await txoutboxBin(['queue', 'peek', 'big', '--json', '--table', TABLE], { env: { DATABASE_URL: proxy.url } });
    assert.ok(proxy.bytesFromServer < 2 * MiB, `${proxy.bytesFromServer} bytes on the wire`);
    assert.equal(run.code, 0, run.err);
    const page = JSON.parse(run.out) as { rows: Record<string, unknown>[]; nextCursor: string | null };
    assert.deepEqual(
      page.rows.map((r) => r.id),
      peekIds,
    );
    const [small, big] = page.rows;
    assert.deepEqual(small?.body, { small: true });
    assert.equal(small?.truncated, false);
    assert.equal(small?.bodyPreview, '{"small":true}');
    assert.equal(big?.truncated, true);
    assert.equal(big?.payloadBytes, BIG);
    assert.equal(big?.body, null);
    assert.equal(big?.state, 'ready');
    assert.equal(Buffer.byteLength(big?.bodyPreview as string), 1_024, 'the 1 KiB preview, as peek() gives it');
    assert.deepEqual(Buffer.from(big?.payload as string, 'base64'), payloads.get(`peek:${peekIds[1]!}`)!.subarray(0, JSON_BODY));

    const table = await txoutboxBin(['queue', 'peek', 'big', '--table', TABLE], { env: { DATABASE_URL: proxy.url } });
    assert.equal(table.code, 0, table.err);
    assert.match(table.out, /^\s*ID\s+STATE\s+CREATED AT\s+DUE AT\s+LEASED AT\s+DELIVERIES\s+BYTES\s+BODY\n/);
    assert.match(table.out, new RegExp(`${peekIds[1]!}\\s+ready\\s.*\\s${BIG}\\s+\\{"blob":"`));
  });

  test('dashboard: the DLQ list and the queue page read previews within the budget; a cut body shows its size', async () => {
    const dashboard = await startDashboard(outbox, { port: 0 });
    try {
      const base = dashboard.url.replace(/\/$/, '');
      proxy.reset();
      const dlq = await get(`${base}/dlq`);
      assert.equal(dlq.status, 200);
      const queue = await get(`${base}/queues/big`);
      assert.equal(queue.status, 200);
      assert.ok(proxy.bytesFromServer < MiB, `${proxy.bytesFromServer} bytes on the wire for both pages`);
      assert.equal((dlq.text.match(/data-testid="dlq-row"/g) ?? []).length, 7);
      assert.equal((dlq.text.match(/data-testid="body-bytes">3\.0 MiB in all</g) ?? []).length, 6, 'each cut body, its size');
      assert.equal((queue.text.match(/data-testid="pending-row"/g) ?? []).length, 7);
      assert.match(queue.text, /payload\s+3\.0 MiB/);
    } finally {
      await dashboard.close();
    }
  });

  test("dashboard: a dead letter's own page reads 16 KiB of a big body, not the body; a small body shows whole", async () => {
    // Before, /dlq/:id read the whole row (dlq.get) to show 16 KiB of it: a 1 GB dead letter was
    // 1 GB read into the runner that hosts the dashboard.
    const dashboard = await startDashboard(outbox, { port: 0 });
    try {
      const base = dashboard.url.replace(/\/$/, '');
      proxy.reset();
      const big = await get(`${base}/dlq/${dlqIds[1]!}`);
      assert.equal(big.status, 200);
      assert.ok(proxy.bytesFromServer < 256 * 1024, `${proxy.bytesFromServer} bytes on the wire for one page`);
      assert.match(big.text, /data-testid="body-truncated">Showing the first 16\.0 KiB of 3\.0 MiB\./);
      assert.match(big.text, /\(JSON, 3\.0 MiB stored\)/);
      const small = await get(`${base}/dlq/${dlqIds[0]!}`);
      assert.equal(small.status, 200);
      assert.doesNotMatch(small.text, /body-truncated/);
      assert.match(
        small.text,
        /<pre data-testid="dlq-body">\{\n {2}(&quot;|&#34;|")small/,
        'a whole JSON body is shown pretty-printed, as before',
      );
      assert.equal((await get(`${base}/dlq/999999`)).status, 404);
    } finally {
      await dashboard.close();
    }
  });

  test('txoutbox dlq show: the text reads 64 KiB of a big body, not the body, and says its size; --json reads it whole', async () => {
    // Before, it read the whole row (dlq.get) to print 2,000 characters of it.
    proxy.reset();
    const big = await txoutboxBin(['dlq', 'show', dlqIds[1]!, '--table', TABLE], { env: { DATABASE_URL: proxy.url } });
    assert.ok(proxy.bytesFromServer < 512 * 1024, `${proxy.bytesFromServer} bytes on the wire`);
    assert.equal(big.code, 0, big.err);
    assert.match(big.out, /^body:\n\{"blob":"[A-Za-z0-9+/]{1991}… \(3145728 bytes stored\)\n/m);
    assert.match(big.out, /last exception:\s+Error: too big/);
    const small = await txoutboxBin(['dlq', 'show', dlqIds[0]!, '--table', TABLE], { env: { DATABASE_URL: proxy.url } });
    assert.equal(small.code, 0, small.err);
    assert.match(small.out, /^body:\n\{\n {2}"small": true\n\}\n/m, 'a whole JSON body is pretty-printed, as before');
    proxy.reset();
    // In this process: the bin's 4 MiB of output is past execFile's buffer.
    const whole = await txoutboxMain(['dlq', 'show', dlqIds[1]!, '--json', '--table', TABLE], { DATABASE_URL: proxy.url });
    assert.equal(whole.code, 0, whole.err);
    assert.ok(proxy.bytesFromServer > BIG, 'the one command that reads a whole body');
    assert.equal((JSON.parse(whole.out) as { body: { blob: string } }).body.blob.length, BIG - 11);
  });

  test('maxPageBytes and peek’s bodyPreviewBytes are validated: InvalidOptionError naming them', async () => {
    for (const maxPageBytes of [0, -1, 1.5, '8', 2 ** 31]) {
      const options = { maxPageBytes } as unknown as { maxPageBytes: number };
      for (const read of [
        () => outbox.dlq.list(options),
        () => outbox.dlq.listPreviews(options),
        () => outbox.peek('big', options),
        () => outbox.peekPreviews('big', options),
      ]) {
        await assert.rejects(read(), (e) => e instanceof InvalidOptionError && e.option === 'maxPageBytes', String(maxPageBytes));
      }
    }
    for (const bodyPreviewBytes of [-1, 65_537, 1.5]) {
      await assert.rejects(
        outbox.peekPreviews('big', { bodyPreviewBytes }),
        (e) => e instanceof InvalidOptionError && e.option === 'bodyPreviewBytes',
      );
    }
  });
});
