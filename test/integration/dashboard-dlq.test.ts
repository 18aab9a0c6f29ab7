import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { startDashboard } from '../../src/dashboard/index.js';
import { DeadLetters, NoRetry, type Outbox } from '../../src/index.js';
import { csrfOf, get, post } from '../support/dashboard-client.js';
import { useTestDatabase } from '../support/database.js';
import { plantDeadLetter } from '../support/dead-letter.js';
import { failDlqDeletesAfter } from '../support/dlq-fault.js';
import { outboxFactory } from '../support/outboxes.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { TestLogger } from '../support/test-logger.js';
import { inTransaction } from '../support/transaction.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const TABLE = 'dash_dlq';

/** What the hostile-payload test publishes: every value a row carries, each trying to become markup. */
const HOSTILE_QUEUE = '<script>alert(1)</script>';
const HOSTILE_HEADER = '"><img src=x onerror=alert(1)>';
const QUOTED_HEADER = `it's "quoted" & <b>bold</b>`;
const HOSTILE_BODY = { html: '<script>alert("body")</script>', attr: '"><img src=x onerror=alert(2)>' };
const HOSTILE_EXCEPTION = `<script>alert("exception")</script> "><img src=x onerror=alert(3)>`;
/** 1 MB, with markup at the start (inside the preview) and at the end (cut off by it). */
const BIG_BODY = `<script>alert(4)</script>${'A'.repeat(1_000_000)}<script>alert(5)</script>`;

/**
 * The page may hold exactly one <script> element, its own (`/assets/live.js`), no <img>, and no
 * tag with an event handler attribute, whatever the rows hold: each hostile value must appear only
 * escaped (as text, `onerror=` is harmless; every real `<` on the page starts the page's own tag).
 */
function assertNoInjectedMarkup(html: string): void {
  assert.equal(html.match(/<script/gi)?.length ?? 0, 1, 'only the page’s own <script src="/assets/live.js">');
  assert.match(html, /<script src="\/assets\/live\.js" defer><\/script>/);
  assert.doesNotMatch(html, /<img/i);
  assert.doesNotMatch(html, /<b>bold/);
  // Attribute values are quoted with " and a " inside one is escaped: blank them, then look for on…= attributes.
  for (const [tag] of html.matchAll(/<[a-z][^>]*>/gi)) {
    assert.doesNotMatch(tag.replace(/"[^"]*"/g, '""'), /\son\w+\s*=/i, `a handler attribute in ${tag}`);
  }
}

async function count(table: string, queue?: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${table} WHERE $1::text IS NULL OR queue = $1`, [
    queue ?? null,
  ]);
  return Number(rows[0]?.n);
}

async function dlqIds(queue: string): Promise<string[]> {
  const { rows } = await db.pool.query<{ id: string }>(`SELECT id FROM ${TABLE}_dlq WHERE queue = $1 ORDER BY id`, [queue]);
  return rows.map((r) => r.id);
}

describe('dashboard: dead letters', () => {
  let outbox: Outbox;
  let base: string;

  before(async () => {
    // Dead letters made the real way: published, then refused once by a subscriber with NoRetry.
    const consumer = await migratedOutbox(newOutbox, db.pool, TABLE);
    for (const queue of ['orders', 'mails', HOSTILE_QUEUE, 'big']) {
      consumer.outbox.subscribe(
        queue,
        () => {
          throw new Error(queue === HOSTILE_QUEUE ? HOSTILE_EXCEPTION : `bad ${queue}`);
        },
        { retry: new NoRetry(), ...FAST_POLL },
      );
    }
    consumer.outbox.start();
    await inTransaction(db.pool, async (client) => {
      await consumer.outbox.publishBatch(client, 'orders', [{ order: 1 }, { order: 2 }, { order: 3 }]);
      await consumer.outbox.publishBatch(client, 'mails', [{ to: 'a@example.com' }]);
      await consumer.outbox.publish(client, HOSTILE_QUEUE, HOSTILE_BODY, {
        headers: { 'x-hostile': HOSTILE_HEADER, 'x-quoted': QUOTED_HEADER, '"><img src=x onerror=alert(6)>': 'name' },
      });
      await consumer.outbox.publish(client, 'big', BIG_BODY);
    });
    await consumer.log.waitFor('dlq_written', 6);
    // Stopped, so redriven rows stay in the outbox for the tests to find.
    await consumer.outbox.stop();
    // 60 more in one queue, for paging (the page holds 50).
    await db.pool.query(
      `INSERT INTO ${TABLE}_dlq (original_id, queue, payload, created_at, attempts_count, deliveries_count, failure_reason, failed_at)
       SELECT g, 'bulk', convert_to('{"n":' || g || '}', 'UTF8'), now(), 1, 1, 'max_deliveries', now() - g * interval '1 second'
       FROM generate_series(1, 60) AS g`,
    );
    outbox = newOutbox({ pool: db.pool, table: TABLE });
    const dashboard = await startDashboard(outbox, { port: 0 });
    db.onCleanup(() => dashboard.close());
    base = dashboard.url.replace(/\/$/, '');
  });

  test('/dlq lists every dead letter, newest first, with a bounded body preview and the exception type', async () => {
    const page = await get(`${base}/dlq`);
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8');
    const rows = page.text.match(/data-testid="dlq-row"/g) ?? [];
    assert.equal(rows.length, 50, 'one page of 50');
    assert.match(page.text, /data-testid="next-page"/);
    assert.match(page.text, /data-testid="redrive-selected"/);
    assert.match(page.text, /data-testid="purge-all"/);
    assert.ok(page.text.length < 200_000, `the page is ${page.text.length} characters: the 1 MB body must not be on it`);
    // No live region (a refresh would untick the boxes): the header and the page say so, true with
    // JavaScript on or off.
    assert.doesNotMatch(page.text, /data-live/);
    assert.match(page.text, /<span id="live-status">not live: reload to update<\/span>/);
    assert.match(page.text, /data-testid="dlq-not-live">\s*Newest first\. This list does not refresh itself/);
  });

  test('filters by queue and by reason; paging follows the cursor to the end', async () => {
    const orders = await get(`${base}/dlq?queue=orders`);
    assert.equal(orders.status, 200);
    assert.equal((orders.text.match(/data-testid="dlq-row"/g) ?? []).length, 3);
    assert.match(orders.text, /<input type="text" name="queue" value="orders"/);
    const byReason = await get(`${base}/dlq?reason=retry_terminal`);
    assert.equal((byReason.text.match(/data-testid="dlq-row"/g) ?? []).length, 6);
    assert.match(byReason.text, /<option value="retry_terminal" selected>/);
    const seen = new Set<string>();
    let url: string | undefined = `${base}/dlq?queue=bulk`;
    let pages = 0;
    while (url !== undefined) {
      const page = await get(url);
      assert.equal(page.status, 200);
      for (const [, id] of page.text.matchAll(/data-testid="dlq-row" data-id="(\d+)"/g)) seen.add(id!);
      const next = /href="([^"]+)" data-testid="next-page"/.exec(page.text)?.[1];
      url = next === undefined ? undefined : `${base}${next.replaceAll('&amp;', '&')}`;
      pages += 1;
    }
    assert.equal(seen.size, 60, 'every bulk row once');
    assert.equal(pages, 2);
  });

  test('hostile payload: queue name, headers, body and exception text appear escaped on the list and the row page', async () => {
    const list = await get(`${base}/dlq`);
    assertNoInjectedMarkup(list.text);
    assert.match(list.text, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/, 'the queue name, escaped');
    const [id] = await dlqIds(HOSTILE_QUEUE);
    const row = await get(`${base}/dlq/${id}`);
    assert.equal(row.status, 200);
    assertNoInjectedMarkup(row.text);
    assert.match(row.text, /&quot;&gt;&lt;img src=x onerror=alert\(1\)&gt;/, 'the header value, escaped');
    assert.match(row.text, /it&#39;s &quot;quoted&quot; &amp; &lt;b&gt;bold&lt;\/b&gt;/, 'quotes and ampersands, escaped');
    assert.match(row.text, /&lt;script&gt;alert\(&quot;exception&quot;\)&lt;\/script&gt;/, 'the exception, escaped');
    assert.match(row.text, /&lt;script&gt;alert\(\\&quot;body\\&quot;\)&lt;\/script&gt;/, 'the JSON body, escaped');
    // The queue name in a link is percent-encoded, in text escaped.
    assert.match(row.text, /href="\/queues\/%3Cscript%3Ealert\(1\)%3C%2Fscript%3E"/);
    const filtered = await get(`${base}/dlq?queue=${encodeURIComponent(HOSTILE_QUEUE)}`);
    assert.equal((filtered.text.match(/data-testid="dlq-row"/g) ?? []).length, 1);
    assertNoInjectedMarkup(filtered.text);
    assert.match(filtered.text, /value="&lt;script&gt;alert\(1\)&lt;\/script&gt;"/, 'in an attribute too');
  });

  test('a 1 MB body: the list reads a 120-byte preview and the size, never the body; the row page shows 16 KiB and says so', async (t) => {
    // Spies, not mocks: both methods run as they are; the spy records which one the page called
    // and what it answered, which the HTML alone cannot tell (a page could read 1 MB and show 120 bytes).
    const list = t.mock.method(DeadLetters.prototype, 'list');
    const previews = t.mock.method(DeadLetters.prototype, 'listPreviews');
    const listed = await get(`${base}/dlq?queue=big`);
    assert.equal(listed.status, 200);
    assertNoInjectedMarkup(listed.text);
    assert.ok(listed.text.length < 20_000, `the page is ${listed.text.length} characters`);
    assert.match(listed.text, /data-testid="body-preview">&lt;script&gt;alert\(4\)&lt;\/script&gt;A+…</);
    assert.equal(list.mock.callCount(), 0, 'no whole row read for the list');
    assert.equal(previews.mock.callCount(), 1);
    const call = previews.mock.calls[0]!;
    assert.equal(call.arguments[0]?.bodyPreviewBytes, 120);
    const answered = await call.result!;
    assert.equal(answered.rows.length, 1);
    const big = answered.rows[0]!;
    assert.ok(!('body' in big) && !('payload' in big), 'the body never reached the dashboard');
    assert.equal(big.bodyPreview, BIG_BODY.slice(0, 120));
    assert.equal(big.payloadBytes, Buffer.byteLength(BIG_BODY));

    const [id] = await dlqIds('big');
    const row = await get(`${base}/dlq/${id}`);
    assert.equal(row.status, 200);
    assertNoInjectedMarkup(row.text);
    assert.ok(row.text.length < 40_000, `the page is ${row.text.length} characters`);
    assert.match(row.text, /data-testid="body-truncated">Showing the first 16\.0 KiB of 976\.6 KiB/);
    assert.match(row.text, /&lt;script&gt;alert\(4\)&lt;\/script&gt;A/);
    assert.doesNotMatch(row.text, /alert\(5\)/, 'the end of the body is past the preview');
  });

  test('a missing id is 404, a malformed one 400, a bad reason 400 naming it: nothing reflected unescaped', async () => {
    assert.equal((await get(`${base}/dlq/999999999`)).status, 404);
    const malformed = await get(`${base}/dlq/${encodeURIComponent('<img src=x onerror=alert(1)>')}`);
    assert.equal(malformed.status, 400);
    assertNoInjectedMarkup(malformed.text);
    const reason = await get(`${base}/dlq?reason=${encodeURIComponent('<script>x</script>')}`);
    assert.equal(reason.status, 400);
    assert.match(reason.text, /reason: expected &#39;max_deliveries&#39;/);
    assertNoInjectedMarkup(reason.text);
    const cursor = await get(`${base}/dlq?cursor=nonsense`);
    assert.equal(cursor.status, 400);
    assert.match(cursor.text, /cursor: expected the nextCursor/);
  });

  test('redrive one by POST: the row leaves the DLQ and is back in the outbox; then back to the list with the count', async () => {
    const [first] = await dlqIds('orders');
    const page = await get(`${base}/dlq/${first}`);
    const answer = await post(`${base}/dlq/redrive?queue=orders`, { csrf: csrfOf(page.text), only: first! });
    assert.equal(answer.status, 303);
    assert.equal(answer.headers.get('location'), '/dlq?queue=orders&notice=redriven&count=1');
    assert.equal(await count(`${TABLE}_dlq`, 'orders'), 2);
    assert.equal(await count(TABLE, 'orders'), 1);
    const after = await get(`${base}${answer.headers.get('location')}`);
    assert.match(after.text, /data-testid="notice">Redriven 1 dead letter:/);
  });

  test('a JSON body is shown with its numbers as written (a number past 2^53 keeps its digits)', async () => {
    // Reported (review): parsed and printed again, the page showed 12345678901234567000 and 10.5.
    const id = await plantDeadLetter(db.pool, `${TABLE}_dlq`, {
      queue: 'digits',
      payload: '{"id":12345678901234567891,"amount":10.50}',
      headers: { 'content-type': 'application/json' },
    });
    try {
      const page = await get(`${base}/dlq/${id}`);
      assert.equal(page.status, 200);
      assert.match(page.text, /&quot;id&quot;: 12345678901234567891,\s*&quot;amount&quot;: 10\.50/);
    } finally {
      await db.pool.query(`DELETE FROM ${TABLE}_dlq WHERE queue = 'digits'`);
    }
  });

  test('a partial redrive says so: the rows whose ordering key a transaction held stayed in the DLQ', async () => {
    // Reported (review): the notice said "Redriven N" and nothing of the rows left behind.
    const { rows } = await db.pool.query<{ id: string }>(
      `INSERT INTO ${TABLE}_dlq (original_id, queue, payload, created_at, attempts_count, deliveries_count, failure_reason, ordering_key)
       VALUES (1, 'keyed', convert_to('"dead"', 'UTF8'), now(), 1, 1, 'rejected', 'b') RETURNING id::text AS id`,
    );
    const holder = await db.pool.connect();
    let answer: Awaited<ReturnType<typeof post>>;
    try {
      await holder.query('BEGIN');
      // An application transaction publishing under key b holds it through the redrive's key wait (10 s).
      await outbox.publish(holder, 'keyed', 'live', { orderingKey: 'b' });
      const page = await get(`${base}/dlq?queue=keyed`);
      answer = await post(`${base}/dlq/redrive?queue=keyed`, { csrf: csrfOf(page.text), only: rows[0]!.id });
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
    assert.equal(answer.status, 303);
    assert.equal(answer.headers.get('location'), '/dlq?queue=keyed&notice=redriven&count=0&left=1');
    assert.equal(await count(`${TABLE}_dlq`, 'keyed'), 1, 'the row is still in the DLQ');
    const after = await get(`${base}${answer.headers.get('location')}`);
    assert.match(
      after.text,
      /Redriven 0 dead letters: [^<]* 1 dead letter stayed here: a transaction held its ordering key throughout/,
    );
    await db.pool.query(`DELETE FROM ${TABLE}_dlq WHERE queue = 'keyed'`);
    // A purge's `remaining` (rows another redrive or purge held throughout) reads the same way.
    const purged = await get(`${base}/dlq?queue=keyed&notice=purged&count=3&left=2`);
    assert.match(
      purged.text,
      /Purged 3 dead letters\. 2 dead letters stayed here: another redrive or purge was moving them throughout\. Purge again\./,
    );
  });

  test('redrive selected: the ticked ids only', async () => {
    const ids = await dlqIds('bulk');
    const page = await get(`${base}/dlq?queue=bulk`);
    const answer = await post(`${base}/dlq/redrive?queue=bulk`, {
      csrf: csrfOf(page.text),
      scope: 'selected',
      id: ids.slice(0, 3),
    });
    assert.equal(answer.status, 303);
    assert.equal(answer.headers.get('location'), '/dlq?queue=bulk&notice=redriven&count=3');
    assert.equal(await count(`${TABLE}_dlq`, 'bulk'), 57);
    assert.equal(await count(TABLE, 'bulk'), 3);
    const none = await post(`${base}/dlq/redrive`, { csrf: csrfOf(page.text), scope: 'selected' });
    assert.equal(none.status, 400, 'nothing ticked');
  });

  test('redrive all matching and purge go through a confirmation page; the page itself changes nothing', async () => {
    const confirm = await get(`${base}/dlq/confirm?action=purge&queue=bulk`);
    assert.equal(confirm.status, 200);
    assert.match(confirm.text, /Purge every dead letter of queue &#39;bulk&#39;\?/);
    assert.match(confirm.text, /data-testid="confirm-button"/);
    assert.equal(await count(`${TABLE}_dlq`, 'bulk'), 57, 'showing the confirmation purged nothing');
    const csrf = csrfOf(confirm.text);
    // A page served before the filter moved to the form's URL posts it in fields: read as no filter,
    // that purge would take every queue's rows. Refused, naming the fix.
    const stale = await post(`${base}/dlq/purge`, { csrf, queue: 'bulk', reason: '', scope: 'filter', confirm: 'yes' });
    assert.equal(stale.status, 400);
    assert.match(stale.text, /served by an earlier version of the dashboard: reload it/);
    assert.equal(await count(`${TABLE}_dlq`, 'bulk'), 57);
    const unconfirmed = await post(`${base}/dlq/purge?queue=bulk`, { csrf, scope: 'filter' });
    assert.equal(unconfirmed.status, 400, 'no confirm=yes: refused');
    assert.equal(await count(`${TABLE}_dlq`, 'bulk'), 57);
    // The page pinned the DLQ's last id: a row that dies while it is open is not purged unseen.
    const through = /name="through" value="(\d+)"/.exec(confirm.text)?.[1];
    assert.ok(through !== undefined, 'the confirmation pins the last id');
    await db.pool.query(
      `INSERT INTO ${TABLE}_dlq (original_id, queue, payload, created_at, attempts_count, deliveries_count, failure_reason)
       VALUES (9999, 'bulk', '\\x7b7d', now(), 1, 1, 'max_deliveries')`,
    );
    const purged = await post(`${base}/dlq/purge?queue=bulk`, { csrf, scope: 'filter', confirm: 'yes', through });
    assert.equal(purged.status, 303);
    assert.equal(purged.headers.get('location'), '/dlq?queue=bulk&notice=purged&count=57');
    assert.equal(await count(`${TABLE}_dlq`, 'bulk'), 1, 'the one that died after the page was shown stays');
    await db.pool.query(`DELETE FROM ${TABLE}_dlq WHERE original_id = 9999`);
    assert.equal(await count(`${TABLE}_dlq`, 'mails'), 1, 'other queues stay');

    const redriveAll = await get(`${base}/dlq/confirm?action=redrive&queue=mails`);
    const redriven = await post(`${base}/dlq/redrive?queue=mails`, {
      csrf: csrfOf(redriveAll.text),
      scope: 'filter',
      confirm: 'yes',
    });
    assert.equal(redriven.status, 303);
    assert.equal(await count(`${TABLE}_dlq`, 'mails'), 0);
    assert.equal(await count(TABLE, 'mails'), 1);
  });

  test('a redrive or purge that fails part way says how many rows its committed batches did, on the page and in the log', async () => {
    // Reported (review): a 500 with the error alone, and no audit line; the batches before it stay done.
    const table = 'dash_dlq_part_way';
    const fixture = await migratedOutbox(newOutbox, db.pool, table);
    const dlq = fixture.outbox.dlqTable!;
    const seed = (rows: number) =>
      db.pool.query(
        `INSERT INTO ${dlq} (original_id, queue, payload, created_at, attempts_count, deliveries_count, failure_reason)
         SELECT g, 'q', '\\x00', now(), 1, 1, 'rejected' FROM generate_series(1, $1::int) AS g`,
        [rows],
      );
    await seed(3);
    const logger = new TestLogger();
    const dashboard = await startDashboard(fixture.outbox, { port: 0, logger });
    db.onCleanup(() => dashboard.close());
    const url = dashboard.url.replace(/\/$/, '');
    for (const [action, rows, verb] of [
      ['redrive', 3, 'redriven'],
      ['purge', 2, 'purged'],
    ] as const) {
      if (action === 'purge') await seed(2);
      const undo = await failDlqDeletesAfter(db.pool, dlq, 1);
      try {
        const confirm = await get(`${url}/dlq/confirm?action=${action}&queue=q`);
        const answer = await post(`${url}/dlq/${action}?queue=q`, {
          csrf: csrfOf(confirm.text),
          scope: 'filter',
          confirm: 'yes',
        });
        assert.equal(answer.status, 500);
        assert.match(answer.text, new RegExp(`The ${action} failed part way`));
        assert.match(
          answer.text,
          new RegExp(
            `batch refused for the test\\. ${rows} dead letters were ${verb} before the failure \\(each batch commits on its own`,
          ),
        );
        const logged = logger.entries.find((e) => e.message === `dashboard: ${action} failed part way`);
        assert.equal(logged?.level, 'error');
        assert.equal(logged?.fields[verb], rows);
        assert.equal(await count(dlq, 'q'), 0, 'the first batch stays done');
      } finally {
        await undo();
      }
    }
  });

  test('read-only: the confirmation page carries no form and no CSRF token', async () => {
    const readOnly = await startDashboard(outbox, { port: 0, readOnly: true });
    try {
      const confirm = await get(`${readOnly.url}dlq/confirm?action=purge&queue=bulk`);
      assert.equal(confirm.status, 200);
      assert.match(confirm.text, /read-only: it cannot purge dead letters/);
      assert.doesNotMatch(confirm.text, /<form|name="csrf"|data-testid="confirm-button"/);
    } finally {
      await readOnly.close();
    }
  });

  test('GET on an action URL is 405 and changes nothing', async () => {
    const before = await count(`${TABLE}_dlq`);
    const [id] = await dlqIds('orders');
    for (const path of [`/dlq/redrive?only=${id}`, '/dlq/purge?scope=filter&confirm=yes&queue=orders', '/queues/orders/pause']) {
      const answer = await get(`${base}${path}`);
      assert.equal(answer.status, 405, path);
      assert.equal(answer.headers.get('allow'), 'POST');
    }
    assert.equal(await count(`${TABLE}_dlq`), before);
  });

  test('an Outbox without a DLQ: the DLQ pages say so', async () => {
    const noDlq = newOutbox({ pool: db.pool, table: 'dash_no_dlq', dlqTable: false });
    const dashboard = await startDashboard(noDlq, { port: 0 });
    try {
      const page = await get(`${dashboard.url}dlq`);
      assert.equal(page.status, 404);
      assert.match(page.text, /has no DLQ table/);
    } finally {
      await dashboard.close();
    }
  });
});
