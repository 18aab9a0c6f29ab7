import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

import type { ResolvedDashboardOptions } from './dashboard-options.js';

export const SESSION_COOKIE = 'txoutbox_dashboard';

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
 * Both secrets are per process (a random key): a restart signs everyone out and voids old forms.
 */
export class RequestGuard {
  readonly #key = randomBytes(32);
  readonly #options: ResolvedDashboardOptions;
  /** The hidden field every POST form carries. */
  readonly csrfToken: string;
  readonly #session: string | undefined;

  constructor(options: ResolvedDashboardOptions) {
    this.#options = options;
    this.csrfToken = this.#sign('csrf');
    // The cookie holds a MAC of the token, not the token: a leaked cookie dies with the process,
    // while the token may also sit in a config file.
    this.#session = options.token === undefined ? undefined : this.#sign(`session:${options.token}`);
  }

  #sign(what: string): string {
    return createHmac('sha256', this.#key).update(what).digest('base64url');
  }

  get tokenRequired(): boolean {
    return this.#options.token !== undefined;
  }

  /** True without a token; with one, when the request carries the session cookie or the bearer token. */
  authenticated(request: IncomingMessage): boolean {
    const token = this.#options.token;
    if (token === undefined || this.#session === undefined) return true;
    const bearer = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '')?.[1];
    if (bearer !== undefined) return sameSecret(bearer, token);
    const session = cookie(request, SESSION_COOKIE);
    return session !== undefined && sameSecret(session, this.#session);
  }

  /** The token a login form or `?token=` presented is the dashboard's. */
  tokenMatches(given: string): boolean {
    return this.#options.token !== undefined && sameSecret(given, this.#options.token);
  }

  /** `Set-Cookie` for a signed-in browser: HttpOnly (no script reads it), SameSite=Strict (no cross-site request carries it). */
  sessionCookie(): string {
    return `${SESSION_COOKIE}=${this.#session ?? ''}; Path=/; HttpOnly; SameSite=Strict`;
  }

  clearedCookie(): string {
    return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`;
  }

  csrfMatches(given: string | null): boolean {
    return given !== null && sameSecret(given, this.csrfToken);
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
    if (!this.#options.loopback) return true;
    const host = request.headers.host;
    if (host === undefined) return false;
    const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d+$/, '');
    return name === 'localhost' || name === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
  }
}
