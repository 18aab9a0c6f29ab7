import type { IncomingMessage } from 'node:http';

import { errorMessage, InvalidOptionError } from '../errors.js';
import { pause, purge, redrive, resume } from './action-routes.js';
import { DASHBOARD_CSS, LIVE_JS } from './assets.js';
import { type DashboardContext, pageContext, type SharedContext } from './dashboard-context.js';
import { FormBodyError, readForm } from './form-body.js';
import { type DashboardResponse, page, redirect } from './http-response.js';
import { safeLocal } from './local-path.js';
import { dlqConfirm, dlqList, dlqRow, overview, processes, queue } from './page-routes.js';
import { errorPage, loginPage } from './pages/message-pages.js';
import { withQuery } from './pages/urls.js';
import { queuePath } from './query-params.js';

const ASSETS: Readonly<Record<string, { body: string; type: string }>> = {
  '/assets/dashboard.css': { body: DASHBOARD_CSS, type: 'text/css; charset=utf-8' },
  '/assets/live.js': { body: LIVE_JS, type: 'text/javascript; charset=utf-8' },
};

function text(status: number, body: string, headers: Readonly<Record<string, string>> = {}): DashboardResponse {
  return { status, body: `${body}\n`, headers };
}

/**
 * The URL without its `token` parameter: where `?token=` redirects once the cookie is set. Through
 * safeLocal like a sign-in's `next`: `GET /.//evil.example?token=…` has the path `//evil.example`.
 */
function withoutToken(url: URL): string {
  const query = new URLSearchParams(url.searchParams);
  query.delete('token');
  return safeLocal(withQuery(url.pathname, Object.fromEntries(query)));
}

async function login(context: DashboardContext, request: IncomingMessage, method: string, url: URL): Promise<DashboardResponse> {
  const { guard } = context;
  if (!guard.tokenRequired) return redirect('/');
  if (method !== 'POST') return page(200, loginPage(context.csrfToken, safeLocal(url.searchParams.get('next')), false));
  if (!guard.sameOrigin(request)) return text(403, 'Forbidden: cross-origin form post.');
  const form = await readForm(request);
  if (!guard.csrfMatches(request, form.get('csrf')))
    return text(403, 'Forbidden: the form is stale or forged (CSRF token). Reload the page.');
  const next = safeLocal(form.get('next'));
  if (!guard.tokenMatches(form.get('token') ?? '')) return page(401, loginPage(context.csrfToken, next, true));
  return redirect(next, { 'Set-Cookie': guard.sessionCookie() });
}

async function post(context: DashboardContext, request: IncomingMessage, url: URL): Promise<DashboardResponse> {
  const path = url.pathname;
  const { guard } = context;
  // Checked before the body is read: a cross-site post is refused whatever it carries.
  if (!guard.sameOrigin(request)) return text(403, 'Forbidden: cross-origin form post.');
  if (context.options.readOnly && path !== '/logout') return text(403, 'Forbidden: this dashboard is read-only.');
  const form = await readForm(request);
  if (!guard.csrfMatches(request, form.get('csrf')))
    return text(403, 'Forbidden: the form is stale or forged (CSRF token). Reload the page.');
  if (path === '/logout') return redirect('/login', { 'Set-Cookie': guard.clearedCookie() });
  if (path === '/dlq/redrive') return await redrive(context, form, url.searchParams);
  if (path === '/dlq/purge') return await purge(context, form, url.searchParams);
  const target = queuePath(path);
  if (target?.action === 'pause') return await pause(context, target.queue, form);
  if (target?.action === 'resume') return await resume(context, target.queue);
  return text(404, 'Not found.');
}

async function get(context: DashboardContext, path: string, query: URLSearchParams): Promise<DashboardResponse> {
  if (path === '/') return await overview(context);
  if (path === '/dlq') return await dlqList(context, query);
  if (path === '/dlq/confirm') return await dlqConfirm(context, query);
  if (path === '/processes') return await processes(context);
  const row = /^\/dlq\/([^/]+)$/.exec(path)?.[1];
  if (row !== undefined) return await dlqRow(context, row);
  const target = queuePath(path);
  if (target !== undefined && target.action === undefined) return await queue(context, target.queue, query);
  return page(404, errorPage(pageContext(context), 'Not found', 'No such page.'));
}

/** A path only POST may use: a GET there is 405 and changes nothing. */
function isAction(path: string): boolean {
  return path === '/dlq/redrive' || path === '/dlq/purge' || path === '/logout' || queuePath(path)?.action !== undefined;
}

/**
 * One request, in order: the Host check (loopback binds), static assets, `?token=` and the login,
 * the token, then a POST's Origin, read-only, body and CSRF checks before its action; GETs only read.
 */
export async function route(shared: SharedContext, request: IncomingMessage): Promise<DashboardResponse> {
  const { guard } = shared;
  const method = request.method === 'HEAD' ? 'GET' : (request.method ?? 'GET');
  if (!guard.hostAllowed(request)) {
    return text(403, 'Forbidden: this dashboard answers to localhost and 127.0.0.1 only (the Host header names another host).');
  }
  const context: DashboardContext = { ...shared, csrfToken: guard.csrfTokenFor(request) };
  const url = new URL(request.url ?? '/', 'http://dashboard.invalid');
  const path = url.pathname;
  const asset = ASSETS[path];
  if (asset !== undefined) {
    if (method !== 'GET') return text(405, 'Method not allowed.', { Allow: 'GET, HEAD' });
    return { status: 200, body: asset.body, contentType: asset.type };
  }
  try {
    if (path === '/login') return await login(context, request, method, url);
    const token = url.searchParams.get('token');
    if (token !== null && method === 'GET' && guard.tokenRequired) {
      if (!guard.tokenMatches(token)) return page(401, loginPage(context.csrfToken, withoutToken(url), true));
      return redirect(withoutToken(url), { 'Set-Cookie': guard.sessionCookie() });
    }
    if (!guard.authenticated(request)) {
      if (method !== 'GET') return text(401, 'Unauthorized: sign in at /login first.');
      return page(401, loginPage(context.csrfToken, withoutToken(url), false));
    }
    if (isAction(path)) {
      if (method !== 'POST') return text(405, 'Method not allowed: actions are form posts.', { Allow: 'POST' });
      return await post(context, request, url);
    }
    if (method !== 'GET') return text(405, 'Method not allowed.', { Allow: 'GET, HEAD' });
    return await get(context, path, url.searchParams);
  } catch (error) {
    if (error instanceof FormBodyError) return text(error.status, error.message, { Connection: 'close' });
    // A bad filter, cursor, id or state in the URL or form: the API's message names it.
    if (error instanceof InvalidOptionError) return page(400, errorPage(pageContext(context), 'Bad request', error.message));
    // The path only: a query string may hold a token.
    context.options.logger.error({ method, path, err: errorMessage(error) }, 'dashboard: request failed');
    // Shown to the signed-in operator only: a database error ("relation … does not exist") is the clue.
    return page(500, errorPage(pageContext(context), 'Something went wrong', errorMessage(error)));
  }
}
