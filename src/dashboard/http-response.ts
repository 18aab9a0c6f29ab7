import type { ServerResponse } from 'node:http';

import type { Html } from './html.js';

/** What a route answers: a page, a redirect after a POST, or a static asset. */
export interface DashboardResponse {
  readonly status: number;
  readonly body: Html | string;
  readonly contentType?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * Sent with every answer. No inline script or style can run (`default-src 'none'`, scripts and
 * styles from this origin only), no page may frame the dashboard (clickjacking an action button),
 * forms post only to it, and no Referer leaks a URL (a `?token=` link included).
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

export const HTML_TYPE = 'text/html; charset=utf-8';

export function page(status: number, body: Html, headers: Readonly<Record<string, string>> = {}): DashboardResponse {
  return { status, body, contentType: HTML_TYPE, headers };
}

/** 303 See Other: the browser follows with a GET, so a reload never re-posts the action. */
export function redirect(location: string, headers: Readonly<Record<string, string>> = {}): DashboardResponse {
  return { status: 303, body: '', headers: { Location: location, ...headers } };
}

export function send(response: ServerResponse, answer: DashboardResponse, head: boolean): void {
  const body = answer.body.toString();
  response.writeHead(answer.status, {
    ...SECURITY_HEADERS,
    'Content-Type': answer.contentType ?? 'text/plain; charset=utf-8',
    'Cache-Control': 'no-store',
    'Content-Length': String(Buffer.byteLength(body)),
    ...answer.headers,
  });
  response.end(head ? undefined : body);
}
