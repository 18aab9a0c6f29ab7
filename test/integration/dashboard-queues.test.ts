import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import { type DashboardOutbox, startDashboard } from '../../src/dashboard/index.js';
import { StatusCache } from '../../src/dashboard/status-cache.js';
import type { Outbox } from '../../src/index.js';
import type { StatusOptions } from '../../src/queues/queue-status.js';
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

/**
 * The Outbox as the dashboard uses it, recording each status() call: a spy on the real Outbox
 * (every call goes through to it), the only way to count the reads the dashboard makes.
 */
function countingStatus(outbox: Outbox): { readonly outbox: DashboardOutbox; readonly reads: StatusOptions[] } {
  const reads: StatusOptions[] = [];
  return {
    reads,
    outbox: {
      table: outbox.table,
      dlqTable: outbox.dlqTable,
      dlq: outbox.dlq,
      status: (options) => {
        reads.push(options ?? {});
        return outbox.status(options);
      },
      pause: (queue, options) => outbox.pause(queue, options),
      resume: (queue) => outbox.resume(queue),
      peekPreviews: (queue, options) => outbox.peekPreviews(queue, options),
    },
  };
}

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

/** The queue page's live pause/resume region, from its opening tag to its end. */
function controlRegion(html: string): string {
  const start = html.indexOf('<div id="queue-control"');
  assert.ok(start >= 0, 'no queue-control region');
  return html.slice(start, html.indexOf('</div>', start));
}

/**
 * Queue names a path segment carries badly: dot segments (WHATWG URL, as browsers and fetch() use it,
 * removes `.` and `..`, and `%2e`/`%2E` spelled ones too), the dashboard's own escape of those (`@.`),
 * a slash, a percent, a space, non-ASCII, an action's name.
 */
const ODD_QUEUES = [
  '.',
  '..',
  '@.',
  '@..',
  '...',
  '../orders',
  '%2E',
  '%2e%2E',
  'a/b',
  '100%',
  'two words',
  'zürich 日本',
  'pause',
];

/** What a GET shows: the queue page's name, or the status and path of whatever else answered. */
async function shownQueue(url: URL): Promise<{ readonly answer: Answer; readonly shown: string }> {
  const answer = await get(url.href);
  const name = /data-testid="queue-name">([^<]*)</.exec(answer.text)?.[1];
  return { answer, shown: name ?? `${answer.status} at ${url.pathname}` };
}

/**
 * Where a page's link or form leads, resolved as a browser resolves it (new URL(href, page): WHATWG URL,
 * dot segments removed); undefined when the page has none. The pages escape `&` in attributes.
 */
function target(html: string, pattern: RegExp, page: URL): URL | undefined {
  const value = pattern.exec(html)?.[1];
  return value === undefined ? undefined : new URL(value.replaceAll('&amp;', '&'), page);
}

const ACTION_FORM = /<form class="actions" method="post" action="([^"]+)"/;

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
    // The header counts what the bars show: 15 whole minutes and the current one.
    assert.match(page.text, /data-testid="throughput-header">Last 15 min \+ now</);
    const bars = /aria-label="handled per minute, oldest first: ([\d, ]+)"/.exec(orders)?.[1]?.split(', ');
    assert.equal(bars?.length, 16);
    // True with JavaScript on or off until live.js says otherwise; refreshes every 5 s by default.
    assert.match(page.text, /<span id="live-status">not live: reload to update<\/span>/);
    assert.match(page.text, /<body data-refresh-ms="5000">/);
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

  test('every queue name round-trips: overview link → queue page → state filter → pause and resume → redirect', async () => {
    for (const name of ODD_QUEUES) await publishCommitted(outbox, db.pool, name, [{ odd: true }]);
    // Its own dashboard, reading status() afresh: the shared one may hold an overview from before these queues.
    const dashboard = await startDashboard(outbox, { port: 0, statusCacheMs: 0 });
    try {
      const home = new URL(dashboard.url);
      const overview = await get(home.href);
      const trips: Record<string, unknown> = {};
      for (const name of ODD_QUEUES) {
        const pageUrl = target(overviewRow(overview, name), /href="([^"]*)" data-testid="queue-link"/, home);
        assert.ok(pageUrl, `no link to ${name}`);
        const page = await shownQueue(pageUrl);
        const filterUrl = target(page.answer.text, /href="([^"]*)" data-testid="state-ready"/, pageUrl);
        const pauseUrl = target(page.answer.text, ACTION_FORM, pageUrl);
        let paused: unknown = 'no pause form';
        let resumed: unknown = 'no resume form';
        if (pauseUrl !== undefined) {
          const csrf = csrfOf(page.answer.text);
          const answer = await post(pauseUrl.href, { csrf, reason: 'odd name' });
          const state = (await outbox.status({ queues: [name] })).queues[0];
          const backUrl = new URL(answer.headers.get('location') ?? '', pauseUrl);
          const back = await shownQueue(backUrl);
          paused = { status: answer.status, paused: state?.paused, back: back.shown };
          const resumeUrl = target(back.answer.text, ACTION_FORM, backUrl);
          if (resumeUrl !== undefined) {
            const again = await post(resumeUrl.href, { csrf });
            resumed = { status: again.status, paused: (await outbox.status({ queues: [name] })).queues[0]?.paused };
          }
          await outbox.resume(name);
        }
        const filter = filterUrl === undefined ? 'no state filter' : (await shownQueue(filterUrl)).shown;
        trips[name] = { page: page.shown, filter, paused, resumed };
      }
      const expected = Object.fromEntries(
        ODD_QUEUES.map((name) => {
          const trip = {
            page: name,
            filter: name,
            paused: { status: 303, paused: true, back: name },
            resumed: { status: 303, paused: false },
          };
          return [name, trip];
        }),
      );
      assert.deepEqual(trips, expected);
      // The escape is for the dot names only: every other name's link is what it was (old links still work).
      assert.match(overviewRow(overview, '..'), /href="\/queues\/@\.\." data-testid="queue-link"/);
      assert.match(overviewRow(overview, '@..'), /href="\/queues\/%40\.\." data-testid="queue-link"/);
      assert.match(overviewRow(overview, 'a/b'), /href="\/queues\/a%2Fb" data-testid="queue-link"/);
    } finally {
      await dashboard.close();
    }
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
    // The control is live, keyed by the state it acts on (another operator's pause swaps it).
    assert.match(
      controlRegion(page.text),
      /^<div id="queue-control" data-live data-live-key="consuming">[^]*data-testid="pause-button"/,
    );
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
    assert.match(
      controlRegion(after.text),
      /^<div id="queue-control" data-live data-live-key="paused">[^]*data-testid="resume-button"/,
    );
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

  test('status reads are shared: one per window for every page asking the same; a pause or resume shows at once', async () => {
    const counted = countingStatus(outbox);
    // A window far longer than the test: every fresh page below is a fresh read, never a late one.
    const dashboard = await startDashboard(counted.outbox, { port: 0, statusCacheMs: 60_000 });
    try {
      const url = dashboard.url;
      const overviewReads = (): number => counted.reads.filter((r) => r.queues === undefined).length;
      const queueReads = (): number => counted.reads.filter((r) => r.queues?.[0] === 'cached').length;
      await Promise.all([get(url), get(url), get(url)]);
      await get(url);
      assert.equal(overviewReads(), 1, 'four overviews, one read');
      const page = await get(`${url}queues/cached`);
      assert.match(page.text, /data-testid="queue-consuming"/);
      await get(`${url}queues/cached?state=ready`);
      assert.equal(queueReads(), 1, 'the queue page asks its own question, once');

      const csrf = csrfOf(page.text);
      assert.equal((await post(`${url}queues/cached/pause`, { csrf, reason: 'cache test' })).status, 303);
      assert.match(
        (await get(`${url}queues/cached?notice=paused`)).text,
        /data-testid="queue-paused"/,
        'not the read from before',
      );
      assert.match(overviewRow(await get(url), 'cached'), /class="badge paused"/, 'the overview’s read went too');
      assert.equal((await post(`${url}queues/cached/resume`, { csrf })).status, 303);
      assert.match((await get(`${url}queues/cached?notice=resumed`)).text, /data-testid="queue-consuming"/);
      assert.deepEqual([overviewReads(), queueReads()], [2, 3]);
    } finally {
      await dashboard.close();
      await outbox.resume('cached');
    }
  });

  test('statusCacheMs: 0 reads for every page; a bad value names the option', async () => {
    const counted = countingStatus(outbox);
    const dashboard = await startDashboard(counted.outbox, { port: 0, statusCacheMs: 0 });
    try {
      await get(dashboard.url);
      await get(dashboard.url);
      assert.equal(counted.reads.length, 2);
    } finally {
      await dashboard.close();
    }
    await assert.rejects(
      startDashboard(outbox, { port: 0, statusCacheMs: -1 }),
      /dashboard\.statusCacheMs: .*an integer from 0 to 60000/,
    );
  });

  test('StatusCache: one read in flight per question, the window from its arrival, invalidate() drops reads in flight, a failure kept one window', async () => {
    let now = 0;
    const reads: StatusOptions[] = [];
    const release: (() => void)[] = [];
    // Each read waits for the test to release it, then asks the real Outbox.
    const cache = new StatusCache(
      (options) => {
        reads.push(options);
        return new Promise<void>((resolve) => release.push(resolve)).then(() => outbox.status(options));
      },
      1_000,
      () => now,
    );
    const first = cache.read({ minutes: 15 });
    assert.equal(cache.read({ minutes: 15 }), first, 'joined the read in flight');
    void cache.read({ queues: ['orders'], minutes: 15 });
    assert.equal(reads.length, 2, 'another question, another read');
    now = 5_000;
    assert.equal(cache.read({ minutes: 15 }), first, 'still in flight: its window has not started');
    release.forEach((go) => {
      go();
    });
    await first;
    now = 5_999;
    assert.equal(cache.read({ minutes: 15 }), first, 'within the window');
    assert.equal(reads.length, 2);
    now = 6_000;
    const second = cache.read({ minutes: 15 });
    assert.notEqual(second, first, 'the window is over');
    cache.invalidate();
    const third = cache.read({ minutes: 15 });
    assert.notEqual(third, second, 'invalidate() left the read in flight behind');
    release.forEach((go) => {
      go();
    });
    await Promise.all([second, third]);
    assert.equal(cache.read({ minutes: 15 }), third, 'the read after the invalidation is the one kept');
    assert.equal(reads.length, 4);

    const missing = newOutbox({ pool: db.pool, table: 'dash_no_such_table' });
    let failing = 0;
    const broken = new StatusCache(
      (options) => {
        failing += 1;
        return missing.status(options);
      },
      1_000,
      () => now,
    );
    await assert.rejects(broken.read({}), /does not exist/);
    await assert.rejects(broken.read({}), /does not exist/);
    assert.equal(failing, 1, 'a failing database is asked once per window');
    now += 1_000;
    await assert.rejects(broken.read({}), /does not exist/);
    assert.equal(failing, 2, 'and asked again after it');
  });

  test('peek judges a queue’s leases by leaseTtlMsOf(queue) when it answers (the runner’s consumers), else by leaseTtlMs', async () => {
    const consumer = await migratedOutbox(newOutbox, db.pool, TABLE);
    let finish!: () => void;
    const held = new Promise<void>((resolve) => (finish = resolve));
    consumer.outbox.subscribe('leases', () => held, FAST_POLL);
    consumer.outbox.start();
    await publishCommitted(outbox, db.pool, 'leases', [{ n: 1 }]);
    await consumer.log.waitFor('dispatched', 1);
    const dashboards = await Promise.all([
      startDashboard(outbox, { port: 0 }),
      // A lease older than 1 ms is expired for these: the row shows as ready (a claim would take it).
      startDashboard(outbox, { port: 0, leaseTtlMsOf: (queue) => (queue === 'leases' ? 1 : undefined) }),
      startDashboard(outbox, { port: 0, leaseTtlMs: 1, leaseTtlMsOf: () => undefined }),
    ]);
    try {
      const pages = await Promise.all(dashboards.map(async (d) => (await get(`${d.url}queues/leases`)).text));
      const states = pages.map((text) =>
        [...text.matchAll(/data-testid="pending-row" data-id="\d+" data-state="(\w+)"/g)].map((m) => m[1]),
      );
      assert.deepEqual(states, [['leased'], ['ready'], ['ready']]);
      // status() counts the expired lease as leased; the page says so, and which row it is.
      for (const text of pages) {
        assert.match(text, /data-testid="depth-leased">1</);
        assert.match(text, /expired leases included; the list shows them as ready/);
      }
      assert.doesNotMatch(pages[0] ?? '', /lease expired/);
      assert.match(pages[1] ?? '', /<td>ready \(lease expired\)<\/td>/);
    } finally {
      await Promise.all(dashboards.map((d) => d.close()));
      finish();
      await consumer.log.waitFor('acked', 1);
      await consumer.outbox.stop();
    }
  });
});
