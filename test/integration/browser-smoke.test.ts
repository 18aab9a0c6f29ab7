/**
 * The browser-test infrastructure itself (test/support/browser.ts), before any dashboard page uses it:
 * Debian's Chromium installs and launches headless, follows a plain link, submits a plain form (POST,
 * then 303 to a GET), runs a page with JavaScript off, and takes a screenshot whose text is drawn
 * with a real font. The pages come from a node:http server on 127.0.0.1 made here.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';

import { type Page } from 'playwright-core';

import { type OpenedPage, openPage, screenshot, VIEWPORT } from '../support/browser.js';

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);

function html(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title>
<style>body { font-family: sans-serif; margin: 2rem; } .wide { font-size: 32px; }</style></head>
<body>${body}</body></html>`;
}

const HOME = html(
  'Home',
  `<h1>Browser smoke</h1>
<p><a id="next" href="/next">Next page</a></p>
<form method="post" action="/submit">
  <label>Message <input name="message"></label>
  <button type="submit">Send</button>
</form>
<p id="js-state">JavaScript is off</p>
<script>document.getElementById('js-state').textContent = 'JavaScript is on';</script>
<p class="wide"><span id="narrow">iiiiiiiiii</span></p>
<p class="wide"><span id="broad">WWWWWWWWWW</span></p>`,
);

/** What the server received through the form, in order (the test checks the POST reached it). */
const received: string[] = [];

function handle(request: IncomingMessage, response: ServerResponse): void {
  const url = new URL(request.url ?? '/', 'http://127.0.0.1');
  const send = (status: number, body: string, headers: Record<string, string> = {}): void => {
    response.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...headers }).end(body);
  };
  if (request.method === 'GET' && url.pathname === '/') {
    send(200, HOME);
    return;
  }
  if (request.method === 'GET' && url.pathname === '/next') {
    send(200, html('Next', '<h1>The next page</h1>'));
    return;
  }
  if (request.method === 'GET' && url.pathname === '/received') {
    send(200, html('Received', `<h1>Received</h1><p id="echo">${escapeHtml(url.searchParams.get('message') ?? '')}</p>`));
    return;
  }
  if (request.method === 'POST' && url.pathname === '/submit') {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => (body += chunk));
    request.on('end', () => {
      const message = new URLSearchParams(body).get('message') ?? '';
      received.push(message);
      // POST, redirect, GET: what the dashboard's state-changing forms do.
      send(303, '', { location: `/received?${new URLSearchParams({ message }).toString()}` });
    });
    return;
  }
  send(404, html('Not found', '<h1>Not found</h1>'));
}

let server: Server;
let origin: string;

before(async () => {
  server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve, reject) => {
    server.close((error) => {
      if (error) reject(error);
      else resolve();
    });
  });
});

/** A page for this test, closed when it ends; undefined (and the test skipped, loudly) without Chromium. */
async function pageFor(t: TestContext, options?: { javaScriptEnabled?: boolean }): Promise<Page | undefined> {
  const opened = await openPage(options);
  if (opened.skip !== undefined) {
    t.skip(opened.skip);
    return undefined;
  }
  t.after(() => opened.close());
  return opened.page;
}

describe('headless Chromium through test/support/browser.ts', () => {
  // Chromium closes with the last open page: holding one for the whole file launches it once, and
  // each test still gets a context of its own (fresh cookies and storage).
  let held: OpenedPage | undefined;
  before(async () => {
    held = await openPage();
  });
  after(() => held?.close?.());

  test('follows a plain link', async (t) => {
    const page = await pageFor(t);
    if (page === undefined) return;
    await page.goto(`${origin}/`);
    assert.equal(await page.title(), 'Home');
    await page.click('#next');
    await page.waitForURL(`${origin}/next`);
    assert.equal(await page.textContent('h1'), 'The next page');
  });

  test('submits a plain form: the POST reaches the server, the 303 lands on the result page', async (t) => {
    const page = await pageFor(t);
    if (page === undefined) return;
    await page.goto(`${origin}/`);
    const message = `hello <b>${Date.now()}</b>`;
    await page.fill('input[name=message]', message);
    await page.click('button[type=submit]');
    await page.waitForURL(/\/received\?/);
    assert.equal(await page.textContent('#echo'), message, 'the value round-trips, escaped as text');
    assert.ok(received.includes(message), 'the server got the POST');
  });

  test('runs the page with JavaScript on, and serves the same HTML with it off', async (t) => {
    const withJs = await pageFor(t);
    if (withJs === undefined) return;
    await withJs.goto(`${origin}/`);
    assert.equal(await withJs.textContent('#js-state'), 'JavaScript is on');

    const withoutJs = await pageFor(t, { javaScriptEnabled: false });
    if (withoutJs === undefined) return;
    await withoutJs.goto(`${origin}/`);
    assert.equal(await withoutJs.textContent('#js-state'), 'JavaScript is off', 'the inline script did not run');
    // Links and forms need no script.
    await withoutJs.fill('input[name=message]', 'no script');
    await withoutJs.click('button[type=submit]');
    await withoutJs.waitForURL(/\/received\?/);
    assert.equal(await withoutJs.textContent('#echo'), 'no script');
    await withoutJs.goto(`${origin}/`);
    await withoutJs.click('#next');
    await withoutJs.waitForURL(`${origin}/next`);
  });

  test('a screenshot at the fixed viewport, with text drawn in a real font', async (t) => {
    const page = await pageFor(t);
    if (page === undefined) return;
    await page.goto(`${origin}/`);

    // Layout with a real proportional font: ten i's are far narrower than ten W's. Without any font
    // every glyph is the same missing-glyph box, and both are equally wide.
    const narrow = (await page.locator('#narrow').boundingBox())!.width;
    const broad = (await page.locator('#broad').boundingBox())!.width;
    assert.ok(narrow * 2 < broad, `"iiiiiiiiii" is ${narrow}px wide, "WWWWWWWWWW" ${broad}px: no proportional font`);

    // The font Chromium actually drew the heading with is a font file on this machine.
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('DOM.enable');
    await cdp.send('CSS.enable');
    const { root } = await cdp.send('DOM.getDocument');
    const { nodeId } = await cdp.send('DOM.querySelector', { nodeId: root.nodeId, selector: 'h1' });
    const { fonts } = await cdp.send('CSS.getPlatformFontsForNode', { nodeId });
    assert.ok(fonts.length > 0 && fonts.every((f) => f.familyName !== ''), `platform fonts for h1: ${JSON.stringify(fonts)}`);
    await cdp.detach();

    const dir = await mkdtemp(join(tmpdir(), 'txoutbox-browser-smoke-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const path = await screenshot(page, 'browser-smoke', dir);
    assert.equal(path, join(dir, 'browser-smoke.png'));
    const png = await readFile(path);
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG file');
    // IHDR is the first chunk: width and height, big-endian, at bytes 16 and 20.
    assert.deepEqual({ width: png.readUInt32BE(16), height: png.readUInt32BE(20) }, VIEWPORT);

    // The same page with its text made transparent looks different: the glyphs put pixels on screen.
    await page.addStyleTag({ content: '* { color: transparent !important; }' });
    const blank = await page.screenshot({ type: 'png', animations: 'disabled', caret: 'hide' });
    assert.notDeepEqual(blank, png, 'the screenshot with text equals the one without: no glyph was drawn');
  });

  test('a screenshot name that is not a plain file name is refused', async (t) => {
    const page = await pageFor(t);
    if (page === undefined) return;
    await assert.rejects(screenshot(page, '../escape', tmpdir()), /expected lowercase words joined by '-'/);
  });
});
