import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { before, describe, test } from 'node:test';

import { type ServedDashboard, startDashboard } from '../../src/dashboard/index.js';
import { InvalidOptionError, type Outbox, PortInUseError } from '../../src/index.js';
import { type Answer, cookieOf, csrfOf, get, getWithHost, post } from '../support/dashboard-client.js';
import { useTestDatabase } from '../support/database.js';
import { outboxFactory } from '../support/outboxes.js';
import { TestLogger } from '../support/test-logger.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const TABLE = 'dash_security';
const TOKEN = 'correct-horse-battery-staple-42';

const started: ServedDashboard[] = [];
db.onCleanup(async () => {
  await Promise.all(started.map((d) => d.close()));
});

async function dashboard(outbox: Outbox, options: Parameters<typeof startDashboard>[1] = {}): Promise<string> {
  const served = await startDashboard(outbox, { port: 0, ...options });
  started.push(served);
  return served.url.replace(/\/$/, '');
}

async function deadLetters(): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${TABLE}_dlq`);
  return Number(rows[0]?.n);
}

async function firstId(): Promise<string> {
  const { rows } = await db.pool.query<{ id: string }>(`SELECT min(id)::text AS id FROM ${TABLE}_dlq`);
  return rows[0]!.id;
}

/**
 * A GET whose request target is sent exactly as written (fetch() and URL normalise `/.//x` to `//x`
 * first): what a crafted link makes a browser send. Answers the status and the Location.
 */
async function rawGet(base: string, target: string): Promise<{ status: number; location: string | undefined }> {
  const { hostname, port } = new URL(base);
  return await new Promise((resolve, reject) => {
    const request = httpRequest({ hostname, port, path: target }, (response) => {
      response.resume();
      resolve({ status: response.statusCode ?? 0, location: response.headers.location });
    });
    request.on('error', reject);
    request.end();
  });
}

/** Where a browser goes with this Location, resolved the browser's way (tabs dropped, `\\` as `/`). */
function assertStaysOnDashboard(base: string, location: string | null | undefined, what: string): void {
  assert.ok(location !== null && location !== undefined, `${what}: a Location`);
  const target = new URL(location, `${base}/`);
  assert.equal(target.origin, new URL(base).origin, `${what}: Location ${JSON.stringify(location)} leaves the dashboard`);
  // eslint-disable-next-line no-control-regex -- no control character may reach the header
  assert.doesNotMatch(location, /[\u0000-\u001f\u007f\\]/, `${what}: Location ${JSON.stringify(location)}`);
}

function assertSecurityHeaders(answer: Answer): void {
  assert.equal(
    answer.headers.get('content-security-policy'),
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  );
  assert.equal(answer.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(answer.headers.get('referrer-policy'), 'no-referrer');
  assert.equal(answer.headers.get('x-frame-options'), 'DENY');
  assert.equal(answer.headers.get('cache-control'), 'no-store');
}

describe('dashboard: security', () => {
  let outbox: Outbox;
  let open: string;

  before(async () => {
    outbox = newOutbox({ pool: db.pool, table: TABLE });
    await outbox.migrate();
    await db.pool.query(
      `INSERT INTO ${TABLE}_dlq (original_id, queue, payload, created_at, attempts_count, deliveries_count, failure_reason)
       SELECT g, 'orders', convert_to('{"n":' || g || '}', 'UTF8'), now(), 1, 1, 'rejected' FROM generate_series(1, 5) AS g`,
    );
    open = await dashboard(outbox);
  });

  test('every answer carries the CSP and the other security headers; assets are the package’s own', async () => {
    for (const path of ['/dlq', '/processes', '/nope', '/assets/dashboard.css', '/assets/live.js']) {
      assertSecurityHeaders(await get(`${open}${path}`));
    }
    const css = await get(`${open}/assets/dashboard.css`);
    assert.equal(css.status, 200);
    assert.equal(css.headers.get('content-type'), 'text/css; charset=utf-8');
    const js = await get(`${open}/assets/live.js`);
    assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.match(js.text, /data-live/);
    const page = await get(`${open}/dlq`);
    // No inline script or style, no external origin: every src/href is a path of the dashboard.
    assert.doesNotMatch(page.text, /<script(?![^>]*src="\/assets\/live\.js")/);
    assert.doesNotMatch(page.text, /style=/);
    assert.doesNotMatch(page.text, /(src|href)="(https?:)?\/\//);
  });

  test('the processes page of a standalone dashboard says where the processes are', async () => {
    const page = await get(`${open}/processes`);
    assert.equal(page.status, 200);
    assert.match(page.text, /data-testid="standalone-note"/);
  });

  test('a POST without the CSRF token, or with a wrong one, is 403 and changes nothing', async () => {
    const id = await firstId();
    const missing = await post(`${open}/dlq/redrive`, { only: id });
    assert.equal(missing.status, 403);
    assert.match(missing.text, /CSRF/);
    const wrong = await post(`${open}/dlq/redrive`, { only: id, csrf: 'x'.repeat(43) });
    assert.equal(wrong.status, 403);
    const purge = await post(`${open}/dlq/purge`, { scope: 'filter', confirm: 'yes', queue: 'orders' });
    assert.equal(purge.status, 403);
    assert.equal(await deadLetters(), 5);
  });

  test('a cross-site POST is 403 even with a valid CSRF token: by Sec-Fetch-Site, else by Origin', async () => {
    const csrf = csrfOf((await get(`${open}/dlq`)).text);
    const id = await firstId();
    const crossSite = await post(`${open}/dlq/redrive`, { only: id, csrf }, { headers: { 'sec-fetch-site': 'cross-site' } });
    assert.equal(crossSite.status, 403);
    const sameSite = await post(`${open}/dlq/redrive`, { only: id, csrf }, { headers: { 'sec-fetch-site': 'same-site' } });
    assert.equal(sameSite.status, 403, 'a sibling subdomain is another origin');
    const wrongOrigin = await post(
      `${open}/dlq/redrive`,
      { only: id, csrf },
      { bare: true, headers: { origin: 'http://evil.example' } },
    );
    assert.equal(wrongOrigin.status, 403);
    assert.match(wrongOrigin.text, /cross-origin/);
    const nullOrigin = await post(`${open}/dlq/redrive`, { only: id, csrf }, { bare: true, headers: { origin: 'null' } });
    assert.equal(nullOrigin.status, 403, 'a sandboxed frame or a data: URL posts Origin: null');
    assert.equal(await deadLetters(), 5);
    // Neither header (curl, a script) with the CSRF token: the token alone decides.
    const script = await post(`${open}/dlq/redrive`, { only: id, csrf }, { bare: true });
    assert.equal(script.status, 303);
    assert.equal(await deadLetters(), 4);
  });

  test('a form post that is not urlencoded is 415; one over 64 KiB is 413', async () => {
    const csrf = csrfOf((await get(`${open}/dlq`)).text);
    const json = await fetch(`${open}/dlq/redrive`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'sec-fetch-site': 'same-origin' },
      body: JSON.stringify({ csrf, only: await firstId() }),
    });
    assert.equal(json.status, 415);
    const huge = await post(`${open}/dlq/redrive`, {
      csrf,
      scope: 'selected',
      id: Array.from({ length: 10_000 }, (_, i) => String(i + 1)),
    });
    assert.equal(huge.status, 413);
    assert.equal(await deadLetters(), 4);
  });

  test('read-only: no action button, no form carrying a CSRF token, and every POST is 403', async () => {
    const readOnly = await dashboard(outbox, { readOnly: true });
    const page = await get(`${readOnly}/dlq`);
    assert.equal(page.status, 200);
    assert.match(page.text, /data-testid="read-only"/);
    assert.match(page.text, /data-testid="dlq-row"/, 'the rows are shown');
    for (const hidden of [
      'name="csrf"',
      'data-testid="redrive-one"',
      'data-testid="redrive-selected"',
      'data-testid="purge-all"',
      'data-testid="dlq-select"',
      'method="post"',
    ]) {
      assert.ok(!page.text.includes(hidden), `${hidden} on a read-only page`);
    }
    const row = await get(`${readOnly}/dlq/${await firstId()}`);
    assert.ok(!row.text.includes('method="post"'));
    // The CSRF token of the writable dashboard is not this one's; the answer is 403 before it is looked at.
    const refused = await post(`${readOnly}/dlq/redrive`, { only: await firstId(), csrf: 'anything' });
    assert.equal(refused.status, 403);
    assert.match(refused.text, /read-only/);
    const pause = await post(`${readOnly}/queues/orders/pause`, { reason: 'no' });
    assert.equal(pause.status, 403);
    assert.equal(await deadLetters(), 4);
  });

  test('a non-loopback host without a token refuses to start, naming the option and the fix; a short token too', async () => {
    await assert.rejects(startDashboard(outbox, { host: '0.0.0.0', port: 0 }), (error: unknown) => {
      assert.ok(error instanceof InvalidOptionError);
      assert.equal(error.option, 'dashboard.token');
      assert.match(error.message, /not a loopback address/);
      assert.match(error.message, /--token, TXOUTBOX_DASHBOARD_TOKEN or dashboard\.token/);
      return true;
    });
    await assert.rejects(startDashboard(outbox, { host: '0.0.0.0', port: 0, token: 'short' }), (error: unknown) => {
      assert.ok(error instanceof InvalidOptionError);
      assert.equal(error.option, 'dashboard.token');
      assert.ok(!error.message.includes('short'), 'the token is not echoed');
      return true;
    });
    const everywhere = await startDashboard(outbox, { host: '0.0.0.0', port: 0, token: TOKEN });
    started.push(everywhere);
    assert.equal((await get(`http://127.0.0.1:${everywhere.port}/dlq`)).status, 401);
  });

  test('with a token every request needs it: a login form, ?token= or a bearer header set the session', async () => {
    const logger = new TestLogger();
    const guarded = await dashboard(outbox, { token: TOKEN, logger });
    const anonymous = await get(`${guarded}/dlq?queue=orders`);
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.text, /data-testid="login-token"/);
    assert.doesNotMatch(anonymous.text, /data-testid="dlq-row"/, 'no data before sign-in');
    assert.match(anonymous.text, /name="next" value="\/dlq\?queue=orders"/);
    assert.equal((await get(`${guarded}/assets/dashboard.css`)).status, 200, 'the login page needs its stylesheet');

    const wrong = await get(`${guarded}/dlq?token=wrong-token-of-some-length`);
    assert.equal(wrong.status, 401);
    assert.match(wrong.text, /data-testid="login-failed"/);

    const link = await get(`${guarded}/dlq?queue=orders&token=${TOKEN}`);
    assert.equal(link.status, 303);
    assert.equal(link.headers.get('location'), '/dlq?queue=orders', 'the token leaves the address bar');
    const setCookie = link.headers.get('set-cookie') ?? '';
    assert.match(setCookie, /; HttpOnly/);
    assert.match(setCookie, /; SameSite=Strict/);
    assert.ok(!setCookie.includes(TOKEN), 'the cookie is a MAC of the token, not the token');
    const cookie = cookieOf(link);
    assert.equal((await get(`${guarded}/dlq`, { cookie })).status, 200);
    assert.equal((await get(`${guarded}/dlq`, { cookie: `${cookie}x` })).status, 401);
    assert.equal((await get(`${guarded}/dlq`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
    assert.equal((await get(`${guarded}/dlq`, { headers: { authorization: 'Bearer nope' } })).status, 401);

    const form = await get(`${guarded}/login?next=/processes`);
    const csrf = csrfOf(form.text);
    const badLogin = await post(`${guarded}/login`, { csrf, token: 'not-the-token-at-all', next: '/processes' });
    assert.equal(badLogin.status, 401);
    const login = await post(`${guarded}/login`, { csrf, token: TOKEN, next: '/processes' });
    assert.equal(login.status, 303);
    assert.equal(login.headers.get('location'), '/processes');
    const offsite = await post(`${guarded}/login`, { csrf, token: TOKEN, next: '//evil.example/' });
    assert.equal(offsite.headers.get('location'), '/', 'never redirected to another site');
    const forged = await post(`${guarded}/login`, { csrf, token: TOKEN }, { headers: { 'sec-fetch-site': 'cross-site' } });
    assert.equal(forged.status, 403);

    const unsigned = await post(`${guarded}/dlq/redrive`, { only: await firstId(), csrf });
    assert.equal(unsigned.status, 401, 'an action without the session');
    assert.equal(await deadLetters(), 4);
    const page = await get(`${guarded}/dlq`, { cookie: cookieOf(login) });
    const logout = await post(`${guarded}/logout`, { csrf: csrfOf(page.text) }, { cookie: cookieOf(login) });
    assert.equal(logout.status, 303);
    assert.match(logout.headers.get('set-cookie') ?? '', /Max-Age=0/);

    // A failing request is logged with its path, never its query (where ?token= rides) nor the token.
    const broken = await dashboard(newOutbox({ pool: db.pool, table: 'dash_missing_table' }), { token: TOKEN, logger });
    const failed = await get(`${broken}/dlq?x=1`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(failed.status, 500);
    assert.match(failed.text, /does not exist/);
    assert.ok(logger.entries.length > 0, 'the failure was logged');
    assert.ok(
      logger.entries.every((line) => !JSON.stringify(line).includes(TOKEN)),
      'no log line holds the token',
    );
  });

  test('a sign-in and a ?token= link redirect within the dashboard, whatever next or the path holds', async () => {
    const guarded = await dashboard(outbox, { token: TOKEN });
    const form = await get(`${guarded}/login`);
    const csrf = csrfOf(form.text);
    const hostile = [
      '/\t/evil.example',
      '/\n/evil.example',
      '/\\evil.example',
      '/\\/evil.example',
      '\\\\evil.example',
      '//evil.example',
      '///evil.example',
      '/.//evil.example',
      '/%2e//evil.example',
      'https://evil.example',
      'http:evil.example',
      ' //evil.example',
      'javascript:alert(1)',
    ];
    for (const next of hostile) {
      const login = await post(`${guarded}/login`, { csrf, token: TOKEN, next });
      assert.equal(login.status, 303, JSON.stringify(next));
      assertStaysOnDashboard(guarded, login.headers.get('location'), `login next=${JSON.stringify(next)}`);
      // The login page's hidden next field, from ?next= (percent-encoded the way a link carries it).
      const page = await get(`${guarded}/login?next=${encodeURIComponent(next)}`);
      const field = /name="next" value="([^"]*)"/.exec(page.text)?.[1]?.replaceAll('&#39;', "'").replaceAll('&amp;', '&');
      assertStaysOnDashboard(guarded, field, `login page next=${JSON.stringify(next)}`);
    }
    const kept = await post(`${guarded}/login`, { csrf, token: TOKEN, next: '/dlq?queue=orders&reason=rejected' });
    assert.equal(kept.headers.get('location'), '/dlq?queue=orders&reason=rejected', 'a path of the dashboard is kept');

    for (const target of ['/.//evil.example', '/%2e//evil.example', '/./%2e//evil.example/x', '//evil.example/dlq']) {
      const link = await rawGet(guarded, `${target}?token=${TOKEN}`);
      assert.equal(link.status, 303, target);
      assertStaysOnDashboard(guarded, link.location, `?token= on ${target}`);
      const anonymous = await rawGet(guarded, target);
      assert.equal(anonymous.status, 401, target);
    }
    const link = await rawGet(guarded, `/queues/orders?state=ready&token=${TOKEN}`);
    assert.equal(link.location, '/queues/orders?state=ready', 'the token leaves, the rest stays');
  });

  test('with a token, the CSRF token is the session’s: the login page’s, or another session’s, is refused', async () => {
    const guarded = await dashboard(outbox, { token: TOKEN });
    const form = await get(`${guarded}/login`);
    const anonymousCsrf = csrfOf(form.text);
    const first = cookieOf(await post(`${guarded}/login`, { csrf: anonymousCsrf, token: TOKEN, next: '/' }));
    const second = cookieOf(await post(`${guarded}/login`, { csrf: anonymousCsrf, token: TOKEN, next: '/' }));
    assert.notEqual(first, second, 'each sign-in is a session of its own');
    const firstCsrf = csrfOf((await get(`${guarded}/dlq`, { cookie: first })).text);
    const secondCsrf = csrfOf((await get(`${guarded}/dlq`, { cookie: second })).text);
    assert.notEqual(firstCsrf, anonymousCsrf, 'what /login shows anyone is not a session’s token');
    assert.notEqual(firstCsrf, secondCsrf);
    // pause is harmless to the other tests' counts; each refusal leaves the queue as it was.
    for (const csrf of [anonymousCsrf, secondCsrf]) {
      const refused = await post(`${guarded}/queues/orders/pause`, { csrf, reason: 'forged' }, { cookie: first });
      assert.equal(refused.status, 403);
      assert.match(refused.text, /CSRF/);
    }
    assert.equal((await outbox.status({ queues: ['orders'] })).queues[0]?.paused, false);
    const paused = await post(`${guarded}/queues/orders/pause`, { csrf: firstCsrf, reason: 'mine' }, { cookie: first });
    assert.equal(paused.status, 303);
    const resumed = await post(`${guarded}/queues/orders/resume`, { csrf: secondCsrf }, { cookie: second });
    assert.equal(resumed.status, 303);
    // Sign-out takes the session's token too.
    assert.equal((await post(`${guarded}/logout`, { csrf: anonymousCsrf }, { cookie: first })).status, 403);
    assert.equal((await post(`${guarded}/logout`, { csrf: firstCsrf }, { cookie: first })).status, 303);
  });

  test('the session cookie is named for the port: two dashboards on one host keep their sessions apart', async () => {
    const one = await startDashboard(outbox, { port: 0, token: TOKEN });
    const two = await startDashboard(outbox, { port: 0, token: TOKEN });
    started.push(one, two);
    const signIn = async (served: ServedDashboard): Promise<string> => {
      const link = await get(`${served.url}dlq?token=${TOKEN}`);
      assert.match(link.headers.get('set-cookie') ?? '', new RegExp(`^txoutbox_dashboard_${served.port}=`));
      return cookieOf(link);
    };
    // A browser keeps both (cookies are per host, not per port) and sends both to each.
    const both = `${await signIn(one)}; ${await signIn(two)}`;
    assert.equal((await get(`${one.url}dlq`, { cookie: both })).status, 200);
    assert.equal((await get(`${two.url}dlq`, { cookie: both })).status, 200);
  });

  test('on a loopback bind, a Host header naming another host is refused (DNS rebinding)', async () => {
    const port = new URL(open).port;
    assert.equal(await getWithHost(`${open}/dlq`, 'evil.example'), 403);
    assert.equal(await getWithHost(`${open}/dlq`, `evil.example:${port}`), 403);
    assert.equal(await getWithHost(`${open}/dlq`, `localhost:${port}`), 200);
    assert.equal(await getWithHost(`${open}/dlq`, `127.0.0.1:${port}`), 200);
    assert.equal(await getWithHost(`${open}/dlq`, `[::1]:${port}`), 200);
  });

  test('a port in use is a PortInUseError naming the port and the fix; nothing is left listening', async () => {
    const port = Number(new URL(open).port);
    await assert.rejects(startDashboard(outbox, { port }), (error: unknown) => {
      assert.ok(error instanceof PortInUseError);
      assert.equal(error.port, port);
      assert.match(error.message, /--port/);
      assert.match(error.message, /Pick another port/);
      return true;
    });
    assert.equal((await get(`${open}/dlq`)).status, 200, 'the first one still serves');
  });
});
