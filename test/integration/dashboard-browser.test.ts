/**
 * The web dashboard end to end, in a real headless Chromium (test/support/browser.ts) against a real
 * dashboard server (startDashboard on 127.0.0.1:0), real PostgreSQL and a real running subscriber:
 * a queue's depth changing live on the overview, every page reached through plain links with
 * JavaScript off, a dead letter redriven from its page and handled again, a queue paused and resumed
 * from its page, a purge through its confirmation page, hostile row values shown as text. Then the
 * docs' screenshots, one per page, over fixed data (architecture/dashboard.md, "Screenshots").
 *
 * `npm run docs:screenshots` sets TXOUTBOX_WRITE_SCREENSHOTS=1 and the PNGs land in docs/screenshots/;
 * otherwise they go to a temporary folder, so `npm test` never changes the work tree.
 */
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';

import pg from 'pg';
import type { Locator, Page } from 'playwright-core';

import { startDashboard } from '../../src/dashboard/index.js';
import { type Message, NoRetry, type Outbox, REDRIVEN_FROM_HEADER } from '../../src/index.js';
import { DOCS_SCREENSHOTS, type OpenedPage, openPage, screenshot } from '../support/browser.js';
import { useTestDatabase } from '../support/database.js';
import { EventLog } from '../support/events.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted } from '../support/publish.js';
import { runnerTestKit } from '../support/runner-process.js';
import { FAST_POLL } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const runnerKit = runnerTestKit(db);
const TABLE = 'dash_browser';
/** The lowest refresh the dashboard accepts: the live update shows up within half a second. */
const REFRESH_MS = 500;

const SCRIPT = '<script>window.__pwned=1</script>';
const IMG = '"><img src=x onerror="window.__pwned=1">';
const HOSTILE_QUEUE = `${SCRIPT}queue`;

/** A page for this test, closed when it ends; undefined (the test skipped, loudly) without Chromium outside CI. */
async function pageFor(t: TestContext, options?: { javaScriptEnabled?: boolean }): Promise<Page | undefined> {
  const opened = await openPage(options);
  if (opened.skip !== undefined) {
    t.skip(opened.skip);
    return undefined;
  }
  t.after(() => opened.close());
  return opened.page;
}

/** Waits until `locator` holds exactly `text` (Playwright's own polling: no sleep, bounded by its action timeout). */
async function hasText(locator: Locator, text: string | number): Promise<void> {
  const escaped = String(text).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  await locator.filter({ hasText: new RegExp(`^\\s*${escaped}\\s*$`) }).waitFor();
}

/** The overview's cell `testid` of `queue`. */
function overviewCell(page: Page, queue: string, testid: string): Locator {
  return page.locator(`tr[data-testid="queue-row"][data-queue="${queue.replace(/["\\]/g, '\\$&')}"]`).getByTestId(testid);
}

/** Empty claims of `queue` this process's subscriber made so far (test/integration/queue-controls.test.ts). */
function emptyFetches(log: EventLog, queue: string): number {
  return log.of('fetched').filter((e) => e.queue === queue && e.count === 0).length;
}

/**
 * What an injected element would leave behind in a page: a dialog, an image request (`<img src=x>`),
 * a CSP report in the console (the dashboard's CSP blocks inline handlers, so `window.__pwned`
 * alone would stay undefined even if the escaping broke: these catch the injection itself).
 */
function watchForInjection(page: Page): { dialogs: string[]; images: string[]; csp: string[] } {
  const seen = { dialogs: [] as string[], images: [] as string[], csp: [] as string[] };
  page.on('dialog', (dialog) => {
    seen.dialogs.push(dialog.message());
    void dialog.dismiss();
  });
  page.on('request', (request) => {
    if (request.resourceType() === 'image') seen.images.push(request.url());
  });
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) seen.csp.push(message.text());
  });
  return seen;
}

/**
 * What the page's DOM holds that an injection would add. In-page code is a string: the project's
 * TypeScript has no DOM types (it is Node code).
 */
const DOM_FOOTPRINT = `({
  pwned: window.__pwned,
  images: document.querySelectorAll('img').length,
  scripts: [...document.querySelectorAll('script')].map((s) => s.getAttribute('src')),
  handlers: [...document.querySelectorAll('*')].flatMap((e) => e.getAttributeNames().filter((n) => n.startsWith('on'))),
})`;

async function assertNotInjected(page: Page, seen: ReturnType<typeof watchForInjection>, where: string): Promise<void> {
  const dom = await page.evaluate<Record<string, unknown>>(DOM_FOOTPRINT);
  assert.deepEqual(
    { ...dom, dialogs: seen.dialogs, imageRequests: seen.images, csp: seen.csp },
    { pwned: undefined, images: 0, scripts: ['/assets/live.js'], handlers: [], dialogs: [], imageRequests: [], csp: [] },
    where,
  );
}

// Chromium closes with the last open page: holding one for the whole file launches it once.
let held: OpenedPage | undefined;
before(async () => {
  held = await openPage();
});
after(() => held?.close?.());

describe('the dashboard in headless Chromium', () => {
  let base: string;
  let operator: Outbox;
  const log = new EventLog();
  let webhooksAccepting = false;
  const webhooks: Message[] = [];
  const emails: unknown[] = [];
  before(async () => {
    operator = newOutbox({ pool: db.pool, table: TABLE });
    await operator.migrate();
    // The consumer "process": an Outbox on its own pool, running for the whole file.
    const pool = new pg.Pool({ connectionString: db.url, max: 6 });
    db.onCleanup(() => pool.end());
    const worker = newOutbox({ pool, table: TABLE, recorder: log.recorder });
    const terminal = { retry: new NoRetry(), ...FAST_POLL };
    worker.subscribe(
      'webhooks',
      (message, { reject }) => {
        if (webhooksAccepting) webhooks.push(message);
        else reject('partner endpoint answered 503');
      },
      terminal,
    );
    worker.subscribe('emails', (message) => void emails.push(message.body), FAST_POLL);
    for (const queue of ['payments', 'reports'])
      worker.subscribe(
        queue,
        (_, { reject }) => {
          reject('card declined');
        },
        terminal,
      );
    worker.subscribe(
      HOSTILE_QUEUE,
      () => {
        throw new Error(`${SCRIPT} ${IMG}`);
      },
      terminal,
    );
    worker.start();
    // One dead letter to walk to with JavaScript off.
    await publishCommitted(operator, db.pool, 'payments', [{ payment: 'P-1' }]);
    await log.waitFor('dlq_written', 1);
    // Every page reads status afresh (statusCacheMs: 0): these tests publish and look at once. The
    // shared window is dashboard-queues.test.ts's; reads in flight are still shared, so pause and
    // resume here still depend on the dashboard dropping them.
    const dashboard = await startDashboard(operator, { port: 0, refreshIntervalMs: REFRESH_MS, statusCacheMs: 0 });
    db.onCleanup(() => dashboard.close());
    base = dashboard.url.replace(/\/$/, '');
  });

  test('overview: a queue’s depth changes on the page without a navigation (live update)', async (t) => {
    const page = await pageFor(t);
    if (page === undefined) return;
    await publishCommitted(operator, db.pool, 'orders', [{ n: 1 }, { n: 2 }]);
    await page.goto(`${base}/`);
    await hasText(overviewCell(page, 'orders', 'depth-ready'), 2);
    await page.locator('#live-status').filter({ hasText: /^live/ }).waitFor();
    const navigations: string[] = [];
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) navigations.push(frame.url());
    });
    await page.evaluate('window.__sameDocument = true');

    await publishCommitted(operator, db.pool, 'orders', [{ n: 3 }, { n: 4 }, { n: 5 }]);
    await hasText(overviewCell(page, 'orders', 'depth-ready'), 5);
    assert.deepEqual(navigations, [], 'swapped in place, not reloaded');
    assert.equal(await page.evaluate('window.__sameDocument'), true, 'the same document');
    // UTC, as every time on the pages (not the browser's locale: this one is en-US, which says 1:56:49 PM).
    assert.match((await page.locator('#live-status').textContent()) ?? '', /^live, updated \d\d:\d\d:\d\dZ$/);
  });

  test('JavaScript off: a reload shows the new depth, and every page is reached through plain links', async (t) => {
    const page = await pageFor(t, { javaScriptEnabled: false });
    if (page === undefined) return;
    await publishCommitted(operator, db.pool, 'refunds', [{ n: 1 }]);
    await page.goto(`${base}/`);
    assert.equal(await page.locator('#live-status').textContent(), 'not live: reload to update', 'live.js did not run');
    await hasText(overviewCell(page, 'refunds', 'depth-ready'), 1);
    await publishCommitted(operator, db.pool, 'refunds', [{ n: 2 }]);
    await page.reload();
    await hasText(overviewCell(page, 'refunds', 'depth-ready'), 2);

    // overview → queue → its dead letters → one dead letter → back to the queue, by clicking links.
    await overviewCell(page, 'payments', 'queue-link').click();
    await page.waitForURL(`${base}/queues/payments`);
    await hasText(page.getByTestId('queue-name'), 'payments');
    await page.getByTestId('depth-dlq').getByRole('link').click();
    await page.waitForURL(`${base}/dlq?queue=payments`);
    assert.equal(await page.getByTestId('dlq-row').count(), 1);
    await page.getByTestId('dlq-row-link').click();
    await page.waitForURL(/\/dlq\/\d+$/);
    await hasText(page.getByTestId('dlq-reason'), 'rejected');
    assert.match((await page.getByTestId('last-exception').textContent()) ?? '', /card declined/);
    await page.getByTestId('dlq-queue').click();
    await page.waitForURL(`${base}/queues/payments`);
    // The purge confirmation is a page of its own, not a confirm() dialog: it works without script.
    await page.getByRole('navigation').getByRole('link', { name: 'Dead letters' }).click();
    await page.waitForURL(`${base}/dlq`);
    await page.getByTestId('purge-all').click();
    await page.waitForURL(`${base}/dlq/confirm?action=purge`);
    await page.getByTestId('cancel-link').click();
    await page.waitForURL(`${base}/dlq`);
    await page.getByRole('navigation').getByRole('link', { name: 'Processes' }).click();
    await page.waitForURL(`${base}/processes`);
    await page.getByTestId('standalone-note').waitFor();
    await page.getByRole('navigation').getByRole('link', { name: 'Queues' }).click();
    await page.waitForURL(`${base}/`);
  });

  test('live refresh: none while the tab is hidden, one at once when it is shown again', async (t) => {
    const page = await pageFor(t);
    if (page === undefined) return;
    // Counts the page's fetch() calls (live.js's only use of the network), and fakes its timers.
    await page.addInitScript(
      '(() => { const f = window.fetch; window.__fetches = 0; window.fetch = function (...a) { window.__fetches += 1; return f.apply(this, a); }; })()',
    );
    await page.clock.install();
    await page.goto(`${base}/`);
    // 'live', or already 'live, updated …' when the browser reported the tab shown once more after
    // load (a loaded machine): that refresh came before the count below starts.
    await page
      .locator('#live-status')
      .filter({ hasText: /^\s*live(, updated [0-9:]+Z)?\s*$/ })
      .waitFor();
    const setVisibility = (state: 'hidden' | 'visible'): Promise<number> =>
      page.evaluate(`(() => {
        Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => '${state}' });
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => ${state === 'hidden'} });
        document.dispatchEvent(new Event('visibilitychange'));
        ${state === 'hidden' ? 'window.__fetches = 0;' : ''}
        return window.__fetches;
      })()`);
    // A refresh the browser started after load (it reported the tab shown again) must have ended
    // before the tab is hidden: live.js does not start a second one while one is in flight, so the
    // one when shown again would not happen (CI saw 0 fetches at the show once).
    if (Number(await page.evaluate('window.__fetches')) > 0) {
      await page
        .locator('#live-status')
        .filter({ hasText: /^live, updated \d\d:\d\d:\d\dZ$/ })
        .waitFor();
    }
    // Counted from the moment it is hidden: a headless page can load while Chromium still reports
    // it hidden and then turn visible, which refreshes once at once (CI saw that fetch here once).
    assert.equal(await setVisibility('hidden'), 0);
    await page.clock.runFor(REFRESH_MS * 20);
    assert.equal(await page.evaluate('window.__fetches'), 0, 'twenty intervals hidden, no refresh');
    // A refresh already in flight when the tab was hidden (one Chromium started as it reported the
    // tab shown, after the check above) must land first: live.js starts no second one meanwhile,
    // so the show would fetch nothing (CI saw 0 at the show twice). aria-busy marks it in flight.
    await page.locator('#live-status:not([aria-busy])').waitFor();
    const shown = page.waitForResponse((response) => response.request().headers()['x-txoutbox-live'] === '1');
    assert.equal(await setVisibility('visible'), 1, 'refreshed the moment it was shown');
    await shown;
    await page
      .locator('#live-status')
      .filter({ hasText: /^live, updated \d\d:\d\d:\d\dZ$/ })
      .waitFor();
  });

  test('queue page: another operator’s pause turns Pause into Resume live; a typed reason survives refreshes; the rate sits on its label’s line', async (t) => {
    const page = await pageFor(t);
    if (page === undefined) return;
    await publishCommitted(operator, db.pool, 'audits', [{ n: 1 }]);
    await page.goto(`${base}/queues/audits`);
    await page.locator('#live-status').filter({ hasText: /^live/ }).waitFor();

    // The number beside "Handled/min", on the same line: the tops of the two texts (same font) match.
    const offset = await page.evaluate(`(() => {
      const top = (node) => { const range = document.createRange(); range.selectNodeContents(node); return range.getClientRects()[0].top; };
      const label = [...document.querySelectorAll('#queue-summary dt')].find((dt) => dt.textContent === 'Handled/min');
      return top(label) - top(document.querySelector('#queue-summary [data-testid="handled-per-minute"]'));
    })()`);
    assert.ok(Math.abs(offset as number) <= 1, `the rate is ${String(offset)} px off its label's line`);

    const reason = page.getByTestId('pause-reason-input');
    await reason.fill('INC-9: checking the partner');
    await page.getByTestId('queue-name').click();
    // A selector, not waitForFunction: the page's CSP forbids the eval that one needs.
    const refreshed = async (): Promise<void> => {
      const before = await page.evaluate<string | null>('document.body.getAttribute("data-live-updated")');
      await page.locator(`body[data-live-updated]:not([data-live-updated="${before ?? ''}"])`).waitFor({ state: 'attached' });
    };
    await refreshed();
    await refreshed();
    assert.equal(await reason.inputValue(), 'INC-9: checking the partner', 'a refresh left the typed reason alone');

    const navigations: string[] = [];
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) navigations.push(frame.url());
    });
    await operator.pause('audits', { reason: 'paused from the CLI' });
    await page.getByTestId('resume-button').waitFor();
    await hasText(page.getByTestId('pause-reason'), 'paused from the CLI');
    await operator.resume('audits');
    await page.getByTestId('pause-button').waitFor();
    assert.equal(await page.getByTestId('pause-reason-input').inputValue(), '', 'a fresh form');
    assert.deepEqual(navigations, [], 'swapped in place, not reloaded');
  });

  test('DLQ list: names and times on one line, the body takes the width (two lines at most); not live, and it says so', async (t) => {
    const page = await pageFor(t);
    if (page === undefined) return;
    const dead = log.of('dlq_written').length;
    const long = { payment: 'P-2', note: 'a long body '.repeat(30) };
    await publishCommitted(operator, db.pool, 'payments', [long]);
    await log.waitFor('dlq_written', dead + 1);
    await page.goto(`${base}/dlq?queue=payments`);
    assert.equal(await page.locator('#live-status').textContent(), 'not live: reload to update', 'no live region here');
    await page.getByTestId('dlq-not-live').waitFor();
    const rows = await page.evaluate<{ queue: number; failed: number; bodyLines: number; bodyShare: number }[]>(`(() => {
      const lines = (node) => { const range = document.createRange(); range.selectNodeContents(node); return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size; };
      const table = document.querySelector('table').getBoundingClientRect().width;
      return [...document.querySelectorAll('tr[data-testid="dlq-row"]')].map((row) => {
        const clamp = row.querySelector('.clamp');
        const lineHeight = parseFloat(getComputedStyle(clamp.firstElementChild).lineHeight);
        return {
          queue: lines(row.querySelector('[data-testid="dlq-row-queue"]')),
          failed: lines(row.querySelector('[data-testid="dlq-row-failed"]')),
          bodyLines: Math.round(clamp.clientHeight / lineHeight),
          bodyShare: clamp.closest('td').getBoundingClientRect().width / table,
        };
      });
    })()`);
    assert.equal(rows.length, 2);
    for (const row of rows) {
      assert.equal(row.queue, 1, `the queue name on one line: ${JSON.stringify(row)}`);
      assert.equal(row.failed, 1, `the time on one line: ${JSON.stringify(row)}`);
      assert.ok(row.bodyLines <= 2 && row.bodyShare > 0.4, `the body column: ${JSON.stringify(row)}`);
    }
  });

  test('DLQ: open a dead letter, redrive it, and the running subscriber handles it', async (t) => {
    const page = await pageFor(t);
    if (page === undefined) return;
    const dead = log.of('dlq_written').length;
    await publishCommitted(operator, db.pool, 'webhooks', [{ event: 'order.created', order: 'A-1001' }]);
    await log.waitFor('dlq_written', dead + 1);
    const [letter] = (await operator.dlq.list({ queue: 'webhooks' })).rows;
    assert.ok(letter !== undefined);
    webhooksAccepting = true;

    await page.goto(`${base}/dlq`);
    await page.locator(`tr[data-testid="dlq-row"][data-id="${letter.id}"]`).getByTestId('dlq-row-link').click();
    await page.waitForURL(`${base}/dlq/${letter.id}`);
    await hasText(page.getByRole('heading', { level: 1 }), `Dead letter ${letter.id}`);
    assert.match((await page.getByTestId('last-exception').textContent()) ?? '', /partner endpoint answered 503/);
    await page.getByRole('button', { name: 'Redrive this dead letter' }).click();
    await page.waitForURL(/\/dlq\?.*notice=redriven/);
    await hasText(page.getByTestId('notice'), 'Redriven 1 dead letter: back in the outbox with fresh counters.');
    assert.equal(await page.locator(`tr[data-testid="dlq-row"][data-id="${letter.id}"]`).count(), 0, 'no longer listed');

    await waitFor(() => webhooks.length === 1, { what: 'the redriven row is handled' });
    assert.deepEqual(webhooks[0]?.body, { event: 'order.created', order: 'A-1001' });
    assert.equal(webhooks[0]?.headers[REDRIVEN_FROM_HEADER], letter.id);
    assert.equal(await operator.dlq.get(letter.id), null);
  });

  test('pause from the queue page stops claiming; resume from it delivers the backlog', async (t) => {
    const page = await pageFor(t);
    if (page === undefined) return;
    await publishCommitted(operator, db.pool, 'emails', [{ to: 'first@example.com' }]);
    await waitFor(() => emails.length === 1, { what: 'the subscriber consumes emails before the pause' });

    await page.goto(`${base}/queues/emails`);
    await page.getByTestId('queue-consuming').waitFor();
    await page.getByTestId('pause-reason-input').fill('INC-7: the SMTP relay is down');
    await page.getByRole('button', { name: 'Pause' }).click();
    await page.waitForURL(/\/queues\/emails\?notice=paused/);
    await page.getByTestId('queue-paused').waitFor();
    await hasText(page.getByTestId('pause-reason'), 'INC-7: the SMTP relay is down');

    // Each publish wakes the subscriber; two empty claims after the commit prove it claimed and got
    // nothing (the first might have started before the rows existed).
    const before = emptyFetches(log, 'emails');
    await publishCommitted(operator, db.pool, 'emails', [
      { to: 'a@example.com' },
      { to: 'b@example.com' },
      { to: 'c@example.com' },
    ]);
    await waitFor(() => emptyFetches(log, 'emails') >= before + 2, { what: 'claims after the publish found nothing' });
    assert.equal(emails.length, 1, 'nothing claimed while paused');
    await hasText(page.locator('#queue-summary').getByTestId('depth-ready'), 3);
    await page.locator('tr[data-testid="pending-row"][data-state="ready"]').nth(2).waitFor();

    await page.getByRole('button', { name: 'Resume' }).click();
    await page.waitForURL(/\/queues\/emails\?notice=resumed/);
    await page.getByTestId('queue-consuming').waitFor();
    await waitFor(() => emails.length === 4, { what: 'the backlog is handled after resume' });
    await hasText(page.locator('#queue-summary').getByTestId('depth-ready'), 0);
    await page.getByTestId('no-pending-rows').waitFor();
  });

  test('purge through the confirmation page', async (t) => {
    const page = await pageFor(t);
    if (page === undefined) return;
    const dead = log.of('dlq_written').length;
    await publishCommitted(operator, db.pool, 'reports', [{ r: 1 }, { r: 2 }, { r: 3 }]);
    await log.waitFor('dlq_written', dead + 3);
    const others = (await operator.dlq.list({ queue: 'payments' })).rows.length;

    await page.goto(`${base}/dlq?queue=reports`);
    assert.equal(await page.getByTestId('dlq-row').count(), 3);
    await page.getByTestId('purge-all').click();
    await page.waitForURL(`${base}/dlq/confirm?action=purge&queue=reports`);
    await hasText(page.getByRole('heading', { level: 1 }), "Purge every dead letter of queue 'reports'?");
    await page.getByTestId('cancel-link').click();
    await page.waitForURL(`${base}/dlq?queue=reports`);
    assert.equal(await page.getByTestId('dlq-row').count(), 3, 'cancel changed nothing');

    await page.getByTestId('purge-all').click();
    await page.getByTestId('confirm-button').click();
    await page.waitForURL(/\/dlq\?queue=reports&notice=purged/);
    await hasText(page.getByTestId('notice'), 'Purged 3 dead letters.');
    await page.getByTestId('no-dead-letters').waitFor();
    assert.equal((await operator.dlq.list({ queue: 'reports' })).rows.length, 0);
    assert.equal((await operator.dlq.list({ queue: 'payments' })).rows.length, others, 'other queues untouched');
  });

  test('purge of a queue whose name has a line break acts on that queue, not on its CRLF twin', async (t) => {
    // Reported (review): the confirmation page sent the queue back in a hidden field, and a browser
    // submits a form value's line breaks as CRLF: the purge took `nl\r\nq`'s rows, never shown.
    const page = await pageFor(t);
    if (page === undefined) return;
    const dlq = operator.dlqTable!;
    const insert = (queue: string, rows: number) =>
      db.pool.query(
        `INSERT INTO ${dlq} (original_id, queue, payload, created_at, attempts_count, deliveries_count, failure_reason)
         SELECT g, $1, convert_to('{}', 'UTF8'), now(), 1, 1, 'rejected' FROM generate_series(1, $2::int) AS g`,
        [queue, rows],
      );
    await insert('nl\nq', 2);
    await insert('nl\r\nq', 1);
    await page.goto(`${base}/dlq?queue=${encodeURIComponent('nl\nq')}`);
    assert.equal(await page.getByTestId('dlq-row').count(), 2);
    await page.getByTestId('purge-all').click();
    await page.getByTestId('confirm-button').click();
    await page.waitForURL(/notice=purged/);
    await hasText(page.getByTestId('notice'), 'Purged 2 dead letters.');
    assert.equal((await operator.dlq.list({ queue: 'nl\nq' })).rows.length, 0);
    assert.equal((await operator.dlq.list({ queue: 'nl\r\nq' })).rows.length, 1, 'the twin was never shown: it stays');
    await db.pool.query(`DELETE FROM ${dlq} WHERE queue = $1`, ['nl\r\nq']);
  });

  test('hostile values in a dead letter are shown as text: nothing runs, nothing loads, no dialog', async (t) => {
    const page = await pageFor(t);
    if (page === undefined) return;
    const seen = watchForInjection(page);
    const dead = log.of('dlq_written').length;
    const body = { html: SCRIPT, attr: IMG };
    await inTransaction(db.pool, (client) =>
      operator.publish(client, HOSTILE_QUEUE, body, { headers: { 'x-script': SCRIPT, 'x-attr': IMG, [IMG]: 'a header name' } }),
    );
    await log.waitFor('dlq_written', dead + 1);

    await page.goto(`${base}/`);
    const link = overviewCell(page, HOSTILE_QUEUE, 'queue-link');
    await hasText(link, HOSTILE_QUEUE);
    await assertNotInjected(page, seen, 'overview');
    await link.click();
    await page.waitForURL(`${base}/queues/${encodeURIComponent(HOSTILE_QUEUE)}`);
    await hasText(page.getByTestId('queue-name'), HOSTILE_QUEUE);
    await page.getByTestId('depth-dlq').getByRole('link').click();
    await page.waitForURL(/\/dlq\?queue=/);
    const preview = (await page.getByTestId('body-preview').textContent()) ?? '';
    assert.ok(preview.includes(SCRIPT) && preview.includes('<img src=x onerror='), `the body preview, literally: ${preview}`);
    await assertNotInjected(page, seen, 'DLQ list');

    await page.getByTestId('dlq-row-link').click();
    await page.waitForURL(/\/dlq\/\d+$/);
    assert.deepEqual(JSON.parse((await page.getByTestId('dlq-body').textContent()) ?? ''), body);
    const exception = (await page.getByTestId('last-exception').textContent()) ?? '';
    assert.ok(exception.startsWith(`Error: ${SCRIPT} ${IMG}`), `the exception, literally: ${exception.slice(0, 200)}`);
    const headers = await page.getByTestId('dlq-headers').getByTestId('header-row').allTextContents();
    for (const expected of [`x-script${SCRIPT}`, `x-attr${IMG}`, `${IMG}a header name`]) {
      assert.ok(
        headers.some((h) => h.replace(/\s+/g, '') === expected.replace(/\s+/g, '')),
        `header ${expected} in ${headers.join(' | ')}`,
      );
    }
    await hasText(page.getByTestId('dlq-queue'), HOSTILE_QUEUE);
    await assertNotInjected(page, seen, 'DLQ row');

    // The watchers see an injection when there is one: the same markup put in by hand loads the image
    // and has its handler refused by the CSP (which is why window.__pwned alone proves nothing).
    const refused = page.waitForEvent('console', (message) => /Content Security Policy/i.test(message.text()));
    await page.evaluate(`document.body.insertAdjacentHTML('beforeend', ${JSON.stringify(IMG)})`);
    await refused;
    await waitFor(() => seen.images.length === 1, { what: 'the injected image was requested' });
    assert.equal(await page.evaluate('window.__pwned'), undefined);
  });
});

/** Fixed data for the docs' screenshots, on the default table (txoutbox.outbox), as a shop would have. */
async function docsData(): Promise<Outbox> {
  const docs = newOutbox({ pool: db.pool });
  await docs.migrate();
  const log = new EventLog();
  const worker = newOutbox({ pool: db.pool, recorder: log.recorder });
  // One delivery at a time per queue: the dead letters of a queue are written in publish order.
  const serial = { concurrency: 1, ...FAST_POLL };
  worker.subscribe('orders', () => undefined, serial);
  worker.subscribe('emails', () => undefined, serial);
  worker.subscribe(
    'webhooks',
    (message, { reject }) => {
      const { status } = message.body as { status?: number };
      if (status !== undefined) reject(`POST https://partner.example.com/hooks answered ${status}`);
    },
    { retry: new NoRetry(), ...serial },
  );
  worker.subscribe(
    'invoices',
    (message) => {
      if ((message.body as { invoice: string }).invoice !== 'INV-2044') return;
      const error = new TypeError("Cannot read properties of undefined (reading 'vatNumber')");
      error.stack = `${error.name}: ${error.message}\n    at renderInvoice (src/invoices/render.ts:88:31)\n    at handleInvoice (src/invoices/handler.ts:21:9)`;
      throw error;
    },
    { retry: new NoRetry(), ...serial },
  );
  const orders = (from: number, count: number) =>
    Array.from({ length: count }, (_, i) => ({ orderId: `A-${from + i}`, total: 19.9 + ((from + i) % 7) * 10, currency: 'EUR' }));
  await publishCommitted(docs, db.pool, 'orders', orders(1000, 60));
  await publishCommitted(
    docs,
    db.pool,
    'emails',
    Array.from({ length: 30 }, (_, i) => ({ template: 'order-confirmation', to: `customer${i + 1}@example.com` })),
  );
  await publishCommitted(
    docs,
    db.pool,
    'webhooks',
    Array.from({ length: 12 }, (_, i) => ({
      event: 'order.paid',
      orderId: `A-${1000 + i}`,
      ...(i % 4 === 3 ? { status: [503, 410, 503][(i - 3) / 4] } : {}),
    })),
  );
  worker.start();
  // Subscriptions run side by side: the invoices come after the webhooks' dead letters, so the DLQ
  // ids are the same on every run.
  await log.waitFor('dlq_written', 3);
  await publishCommitted(
    docs,
    db.pool,
    'invoices',
    ['INV-2041', 'INV-2042', 'INV-2043', 'INV-2044', 'INV-2045'].map((invoice) => ({ invoice })),
  );
  await waitFor(() => log.of('acked').length + log.of('dlq_written').length === 107, { what: 'the handled rows' });
  // stop() writes the per-minute counts the throughput column reads.
  await worker.stop();
  // What waits now: a backlog of orders, paused emails, invoices due in an hour.
  await publishCommitted(docs, db.pool, 'orders', orders(1060, 24));
  await publishCommitted(
    docs,
    db.pool,
    'emails',
    Array.from({ length: 9 }, (_, i) => ({ template: 'shipping-notice', to: `customer${i + 31}@example.com` })),
  );
  await docs.pause('emails', { reason: 'INC-1042: the SMTP relay is refusing mail' });
  await inTransaction(db.pool, async (client) => {
    for (const invoice of ['INV-2046', 'INV-2047', 'INV-2048'])
      await docs.publish(client, 'invoices', { invoice }, { activateInMs: 3_600_000 });
  });
  return docs;
}

describe('screenshots of every page, for the docs', () => {
  test('overview, queue, paused queue, dead letters, one dead letter, purge confirmation, processes (served by txoutbox run)', async (t) => {
    const page = await pageFor(t);
    if (page === undefined) return;
    const write = process.env.TXOUTBOX_WRITE_SCREENSHOTS === '1';
    const dir = write ? DOCS_SCREENSHOTS : await mkdtemp(join(tmpdir(), 'txoutbox-dashboard-screenshots-'));
    if (!write) t.after(() => rm(dir, { recursive: true, force: true }));
    const docs = await docsData();
    const dashboard = await startDashboard(docs, { port: 0 });
    t.after(() => dashboard.close());
    const base = dashboard.url.replace(/\/$/, '');
    const shots: string[] = [];
    const shoot = async (name: string): Promise<void> => {
      shots.push(await screenshot(page, name, dir));
    };

    await page.goto(`${base}/`);
    await hasText(overviewCell(page, 'orders', 'depth-ready'), 24);
    await shoot('overview');
    await overviewCell(page, 'orders', 'queue-link').click();
    await page.locator('tr[data-testid="pending-row"]').nth(23).waitFor();
    await shoot('queue');
    await page.goto(`${base}/queues/emails`);
    await page.getByTestId('queue-paused').waitFor();
    await shoot('queue-paused');
    await page.goto(`${base}/dlq`);
    assert.equal(await page.getByTestId('dlq-row').count(), 4);
    await shoot('dlq');
    await page.locator('tr[data-testid="dlq-row"]').filter({ hasText: 'invoices' }).getByTestId('dlq-row-link').click();
    await page.getByTestId('last-exception').waitFor();
    await shoot('dlq-row');
    await page.goto(`${base}/dlq?queue=webhooks`);
    await page.getByTestId('purge-all').click();
    await page.getByTestId('confirm-button').waitFor();
    await shoot('dlq-confirm');

    // The processes page has something to show only when `txoutbox run` serves the dashboard: a real
    // runner on the same table, one consumer of two processes (each child costs a second or more of
    // start-up on 2 cores). It drains the waiting orders: the pages above are taken by then.
    await runnerKit.prepare('txoutbox.outbox');
    const config = runnerKit.writeConfig('docs-processes', 'txoutbox.outbox', {
      orders: { queue: 'orders', export: 'orders', processes: 2 },
    });
    appendFileSync(config, 'dashboard:\n  port: 0\n');
    const runner = runnerKit.start(config);
    await runnerKit.whenStarted(runner, { orders: 2 });
    const served = runner.logs.find((line) => line.msg === 'runner started')?.dashboard;
    assert.ok(typeof served === 'string', 'the runner logs its dashboard URL');
    await page.goto(`${served}processes`);
    await page.getByTestId('runner-ready').waitFor();
    await hasText(page.locator('tr[data-consumer="orders"]').getByTestId('processes-ready'), 2);
    await shoot('processes');
    runner.child.kill('SIGTERM');
    assert.equal((await runner.exited).code, 0);

    assert.deepEqual(
      shots.map((s) => s.slice(dir.length).replace(/^\//, '')),
      ['overview.png', 'queue.png', 'queue-paused.png', 'dlq.png', 'dlq-row.png', 'dlq-confirm.png', 'processes.png'],
    );
  });
});
