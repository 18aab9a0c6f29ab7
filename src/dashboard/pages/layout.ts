import { type Html, html, type HtmlValue } from '../html.js';

/** What every page needs to know about the dashboard serving it. */
export interface PageContext {
  readonly csrfToken: string;
  readonly readOnly: boolean;
  /** A token protects the dashboard: the header shows a sign-out button. */
  readonly signedIn: boolean;
  readonly refreshIntervalMs: number;
  /** The outbox table, shown in the header. */
  readonly table: string;
}

export type Section = 'overview' | 'dlq' | 'processes' | 'none';

const NAV: readonly [Section, string, string][] = [
  ['overview', '/', 'Queues'],
  ['dlq', '/dlq', 'Dead letters'],
  ['processes', '/processes', 'Processes'],
];

/**
 * What the header says until live.js runs. True on every page whatever the browser: with JavaScript
 * off nothing refreshes, and a page without live regions (the dead letters) never does; live.js
 * replaces it with "live" where it refreshes regions.
 */
export const NOT_LIVE = 'not live: reload to update';

/** The CSRF field every state-changing form carries. */
export function csrfField(context: PageContext): Html {
  return html`<input type="hidden" name="csrf" value="${context.csrfToken}" />`;
}

/** Whether action buttons are shown: never in read-only mode (the POSTs are refused there anyway). */
export function canAct(context: PageContext): boolean {
  return !context.readOnly;
}

/**
 * Every page's <head>: no Referer, an empty icon (no request for /favicon.ico), the stylesheet, and
 * with `live` the refresh script (a bare page has nothing to refresh).
 */
function head(title: string, live: boolean): Html {
  return html`<head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <meta name="referrer" content="no-referrer" />
    <link rel="icon" href="data:," />
    <title>${title} · txoutbox</title>
    <link rel="stylesheet" href="/assets/dashboard.css" />
    ${live ? html`<script src="/assets/live.js" defer></script>` : ''}
  </head>`;
}

export function layout(context: PageContext, args: { title: string; section: Section; content: HtmlValue }): Html {
  const signOut = context.signedIn
    ? html`<form class="inline" method="post" action="/logout">
        ${csrfField(context)}<button type="submit" data-testid="logout-button">Sign out</button>
      </form>`
    : '';
  return html`<!doctype html>
    <html lang="en">
      ${head(args.title, true)}
      <body data-refresh-ms="${context.refreshIntervalMs}">
        <header>
          <span class="brand">txoutbox</span>
          <nav>
            ${NAV.map(([section, href, label]) =>
              section === args.section
                ? html`<a href="${href}" aria-current="page">${label}</a>`
                : html`<a href="${href}">${label}</a>`,
            )}
          </nav>
          <span class="meta"
            ><span data-testid="outbox-table">${context.table}</span
            >${context.readOnly ? html` · <span class="badge muted" data-testid="read-only">read-only</span>` : ''} ·
            <span id="live-status">${NOT_LIVE}</span></span
          >
          ${signOut}
        </header>
        <main>${args.content}</main>
      </body>
    </html> `;
}

/** A bare page for the login form and errors before sign-in: no navigation, nothing of the outbox. */
export function barePage(title: string, content: HtmlValue): Html {
  return html`<!doctype html>
    <html lang="en">
      ${head(title, false)}
      <body>
        <header><span class="brand">txoutbox</span></header>
        <main>${content}</main>
      </body>
    </html> `;
}
