import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

import { hostHeaderIsLoopback } from '../util/loopback.js';
import type { ResolvedDashboardOptions } from './dashboard-options.js';

/** The session cookie's name is this plus the dashboard's port (cookies are scoped by host, not port). */
export const SESSION_COOKIE_PREFIX = 'txoutbox_dashboard';

/** Equal-time comparison of two strings of any lengths: their digests have one length. */
export function sameSecret(given: string, expected: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(expected));
}

function cookie(request: IncomingMessage, name: string): string | undefined {
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * The dashboard's request checks (architecture/dashboard.md, Security):
 * - the token (when set): a session cookie or `Authorization: Bearer`, compared in constant time;
 * - a CSRF token in every state-changing form, plus the Sec-Fetch-Site / Origin check;
 * - on a loopback bind, the Host header, so a DNS-rebinding page cannot read or post as this origin.
 * Sessions and CSRF tokens are MACs under a per-process random key: a restart signs everyone out
 * and voids old forms.
 */
export class RequestGuard {
  readonly #key = randomBytes(32);
  readonly #options: ResolvedDashboardOptions;
  /** `txoutbox_dashboard_<port>`: two dashboards (or another service) on one host keep their cookies apart. */
  readonly #cookieName: string;
  /** Without a token there are no sessions (a loopback bind): one CSRF token for the process. */
  readonly #processCsrf: string;

  constructor(options: ResolvedDashboardOptions, port: number) {
    this.#options = options;
    this.#cookieName = `${SESSION_COOKIE_PREFIX}_${port}`;
    this.#processCsrf = this.#sign('csrf');
  }

  #sign(what: string): string {
    return createHmac('sha256', this.#key).update(what).digest('base64url');
  }

  get tokenRequired(): boolean {
    return this.#options.token !== undefined;
  }

  /**
   * The request's session cookie when it is one this process issued (`<id>.<MAC of id>`), else
   * undefined. The cookie never holds the token, which may also sit in a config file: a leaked
   * cookie dies with the process.
   */
  #session(request: IncomingMessage): string | undefined {
    const value = cookie(request, this.#cookieName);
    const dot = value?.lastIndexOf('.') ?? -1;
    if (value === undefined || dot <= 0) return undefined;
    return sameSecret(value.slice(dot + 1), this.#sign(`session:${value.slice(0, dot)}`)) ? value : undefined;
  }

  /** True without a token; with one, when the request carries a session cookie or the bearer token. */
  authenticated(request: IncomingMessage): boolean {
    const token = this.#options.token;
    if (token === undefined) return true;
    const bearer = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '')?.[1];
    if (bearer !== undefined) return sameSecret(bearer, token);
    return this.#session(request) !== undefined;
  }

  /** The token a login form or `?token=` presented is the dashboard's. */
  tokenMatches(given: string): boolean {
    return this.#options.token !== undefined && sameSecret(given, this.#options.token);
  }

  /**
   * `Set-Cookie` for a browser that just signed in: a new session (a random id and its MAC),
   * HttpOnly (no script reads it), SameSite=Strict (no cross-site request carries it).
   */
  sessionCookie(): string {
    const id = randomBytes(18).toString('base64url');
    return `${this.#cookieName}=${id}.${this.#sign(`session:${id}`)}; Path=/; HttpOnly; SameSite=Strict`;
  }

  clearedCookie(): string {
    return `${this.#cookieName}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`;
  }

  /**
   * The CSRF token of the request's forms. With a token: a MAC of the session cookie, so the one
   * `/login` shows anyone (no session) and another session's are refused; a bearer request has no
   * session and gets the sessionless one (a browser never adds an Authorization header by itself,
   * so no cross-site page can send one). Without a token: the per-process one.
   */
  csrfTokenFor(request: IncomingMessage): string {
    if (this.#options.token === undefined) return this.#processCsrf;
    return this.#sign(`csrf:${this.#session(request) ?? ''}`);
  }

  csrfMatches(request: IncomingMessage, given: string | null): boolean {
    return given !== null && sameSecret(given, this.csrfTokenFor(request));
  }

  /**
   * A browser's cross-origin POST is refused even before the CSRF token is looked at: by
   * Sec-Fetch-Site (every current browser sends it) when present, else by Origin against Host. A
   * request with neither is not from a browser page (curl, a script) and goes on to the CSRF check.
   */
  sameOrigin(request: IncomingMessage): boolean {
    const site = request.headers['sec-fetch-site'];
    if (site !== undefined) return site === 'same-origin' || site === 'none';
    const origin = request.headers.origin;
    if (origin === undefined) return true;
    try {
      return new URL(origin).host === request.headers.host;
    } catch {
      return false;
    }
  }

  /**
   * On a loopback bind, the Host header must name a loopback address: a page on evil.example whose
   * DNS answer flips to 127.0.0.1 (DNS rebinding) would otherwise be same-origin with the dashboard.
   */
  hostAllowed(request: IncomingMessage): boolean {
    return !this.#options.loopback || hostHeaderIsLoopback(request.headers.host);
  }
}
