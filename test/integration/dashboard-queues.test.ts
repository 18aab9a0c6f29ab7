import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { startDashboard } from '../../src/dashboard/index.js';
import type { Outbox } from '../../src/index.js';
import { type Answer, csrfOf, get, post } from '../support/dashboard-client.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const TABLE = 'dash_queues';
const HOSTILE_QUEUE = '"><img src=x onerror=alert(1)><script>alert(2)</script>';
const HOSTILE_REASON = '<script>alert("reason")</script>';

/** One <tr> of the overview, by its queue (data-queue holds the escaped name). */
function overviewRow(page: Answer, escapedQueue: string): string {
  const start = page.text.indexOf(`data-queue="${escapedQueue}"`);
  assert.ok(start > 0, `no row for ${escapedQueue}`);
  return page.text.slice(start, page.text.indexOf('</tr>', start));
}

function cell(html: string, testid: string): string {
  const match = new RegExp(`data-testid="${testid}"[^>]*>([^<]*)<`).exec(html);
  assert.ok(match, `no ${testid}`);
  return match[1]!.trim();
}

function assertNoInjectedMarkup(html: string): void {
  assert.equal(html.match(/<script/gi)?.length ?? 0, 1, 'only the page’s own <script src="/assets/live.js">');
  assert.doesNotMatch(html, /<img/i);
  // Attribute values are quoted with " and a " inside one is escaped: blank them, then look for on…= attributes.
  for (const [tag] of html.matchAll(/<[a-z][^>]*>/gi)) {
    assert.doesNotMatch(tag.replace(/"[^"]*"/g, '""'), /\son\w+\s*=/i, `a handler attribute in ${tag}`);
  }
}

describe('dashboard: queues', () => {
  let outbox: Outbox;
  let base: string;

  before(async () => {
    // Handled rows first (their minute shows in the throughput), then a backlog nobody consumes.
    const consumer = await migratedOutbox(newOutbox, db.pool, TABLE);
    consumer.outbox.subscribe('orders', () => undefined, FAST_POLL);
    consumer.outbox.start();
    await publishCommitted(consumer.outbox, db.pool, 'orders', [1, 2, 3, 4]);
    await consumer.log.waitFor('acked', 4);
    // stop() flushes the per-minute outcome counts status() reads.
    await consumer.outbox.stop();
    outbox = newOutbox({ pool: db.pool, table: TABLE });
    await publishCommitted(outbox, db.pool, 'orders', [{ n: 1 }, { n: 2 }, { n: 3 }]);
    await inTransaction(db.pool, (client) => outbox.publish(client, 'orders', { later: true }, { activateInMs: 3_600_000 }));
    await publishCommitted(outbox, db.pool, HOSTILE_QUEUE, ['<script>alert(3)</script>']);
    await publishCommitted(
      outbox,
      db.pool,
      'bulk',
      Array.from({ length: 60 }, (_, n) => ({ n })),
    );
    const dashboard = await startDashboard(outbox, { port: 0 });
    db.onCleanup(() => dashboard.close());
    base = dashboard.url.replace(/\/$/, '');
  });

  test('overview: every queue with its depth by state, oldest ready age, handled per minute and a throughput bar row', async () => {
    const page = await get(`${base}/`);
    assert.equal(page.status, 200);
    assert.match(page.text, /<div id="overview-queues" data-live>/, 'a live region');
    const orders = overviewRow(page, 'orders');
    assert.equal(cell(orders, 'depth-ready'), '3');
    assert.equal(cell(orders, 'depth-scheduled'), '1');
    assert.equal(cell(orders, 'depth-leased'), '0');
    assert.match(cell(orders, 'oldest-age'), /^\d+ s$/);
    assert.notEqual(cell(orders, 'handled-per-minute'), '0.0', 'the 4 handled rows');
    assert.match(orders, /<svg\s+class="spark"[^>]*aria-label="handled per minute, oldest first: [0, ]*4"/);
    assert.match(orders, /href="\/queues\/orders"/);
    assert.match(orders, /href="\/dlq\?queue=orders">0</);
    assert.equal(cell(overviewRow(page, 'bulk'), 'depth-ready'), '60');
  });

  test('hostile queue name: escaped on the overview and its queue page, percent-encoded in links', async () => {
    const overview = await get(`${base}/`);
    assertNoInjectedMarkup(overview.text);
    const escaped = '&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;';
    assert.equal(cell(overviewRow(overview, escaped), 'depth-ready'), '1');
    const href = `/queues/${encodeURIComponent(HOSTILE_QUEUE)}`;
    assert.ok(overview.text.includes(`href="${href}"`));
    const page = await get(`${base}${href}`);
    assert.equal(page.status, 200);
    assertNoInjectedMarkup(page.text);
    assert.ok(page.text.includes(`data-testid="queue-name">${escaped}<`));
    assert.match(page.text, /&lt;script&gt;alert\(3\)&lt;\/script&gt;/, 'the body preview, escaped');
  });

  test('queue page: pending rows oldest first, filtered by state, paged by cursor', async () => {
    const page = await get(`${base}/queues/orders`);
    assert.equal(page.status, 200);
    const states = [...page.text.matchAll(/data-testid="pending-row" data-id="\d+" data-state="(\w+)"/g)].map((m) => m[1]);
    assert.deepEqual(states, ['ready', 'ready', 'ready', 'scheduled']);
    assert.equal(cell(page.text, 'depth-ready'), '3');
    const scheduled = await get(`${base}/queues/orders?state=scheduled`);
    assert.equal((scheduled.text.match(/data-testid="pending-row"/g) ?? []).length, 1);
    assert.match(scheduled.text, /&quot;later&quot;:true/);
    const leased = await get(`${base}/queues/orders?state=leased`);
    assert.match(leased.text, /data-testid="no-pending-rows">\s*No leased rows/);

    const first = await get(`${base}/queues/bulk`);
    assert.equal((first.text.match(/data-testid="pending-row"/g) ?? []).length, 50);
    const next = /href="([^"]+)" data-testid="next-page"/.exec(first.text)?.[1];
    assert.ok(next !== undefined);
    const second = await get(`${base}${next.replaceAll('&amp;', '&')}`);
    assert.equal((second.text.match(/data-testid="pending-row"/g) ?? []).length, 10);
    assert.doesNotMatch(second.text, /data-testid="next-page"/);
    assert.match(second.text, /data-testid="first-page"/);

    const bad = await get(`${base}/queues/orders?state=${encodeURIComponent('<b>x</b>')}`);
    assert.equal(bad.status, 400);
    assert.match(bad.text, /state: expected/);
    assert.doesNotMatch(bad.text, /<b>x/);
  });

  test('pause by POST with a reason, then resume: the queue’s state in the database follows; the reason shows escaped', async () => {
    const page = await get(`${base}/queues/orders`);
    assert.match(page.text, /data-testid="pause-button"/);
    assert.doesNotMatch(page.text, /data-testid="resume-button"/);
    const csrf = csrfOf(page.text);
    const paused = await post(`${base}/queues/orders/pause`, { csrf, reason: HOSTILE_REASON });
    assert.equal(paused.status, 303);
    assert.equal(paused.headers.get('location'), '/queues/orders?notice=paused');
    const status = (await outbox.status({ queues: ['orders'] })).queues[0];
    assert.equal(status?.paused, true);
    assert.equal(status?.pauseReason, HOSTILE_REASON);

    const after = await get(`${base}/queues/orders?notice=paused`);
    assertNoInjectedMarkup(after.text);
    assert.match(after.text, /data-testid="notice">Paused:/);
    assert.match(after.text, /data-testid="queue-paused"/);
    assert.match(after.text, /data-testid="pause-reason">&lt;script&gt;alert\(&quot;reason&quot;\)&lt;\/script&gt;</);
    assert.match(after.text, /data-testid="resume-button"/);
    const overview = await get(`${base}/`);
    assert.match(overviewRow(overview, 'orders'), /class="badge paused"/);

    const again = await post(`${base}/queues/orders/pause`, { csrf });
    assert.equal(again.headers.get('location'), '/queues/orders?notice=unchanged', 'already paused');
    const resumed = await post(`${base}/queues/orders/resume`, { csrf });
    assert.equal(resumed.status, 303);
    assert.equal(resumed.headers.get('location'), '/queues/orders?notice=resumed');
    assert.equal((await outbox.status({ queues: ['orders'] })).queues[0]?.paused, false);
  });

  test('a pause reason over 500 characters is a 400 naming it; nothing is paused', async () => {
    const csrf = csrfOf((await get(`${base}/queues/bulk`)).text);
    const answer = await post(`${base}/queues/bulk/pause`, { csrf, reason: 'x'.repeat(501) });
    assert.equal(answer.status, 400);
    assert.match(answer.text, /reason/);
    assert.equal((await outbox.status({ queues: ['bulk'] })).queues[0]?.paused, false);
  });

  test('read-only: the queue page has no pause button, and the POST is refused', async () => {
    const readOnly = await startDashboard(outbox, { port: 0, readOnly: true });
    try {
      const page = await get(`${readOnly.url}queues/orders`);
      assert.equal(page.status, 200);
      assert.doesNotMatch(page.text, /pause-button|resume-button|method="post"/);
      assert.equal((await post(`${readOnly.url}queues/orders/pause`, { reason: 'x' })).status, 403);
      assert.equal((await outbox.status({ queues: ['orders'] })).queues[0]?.paused, false);
    } finally {
      await readOnly.close();
    }
  });
});
