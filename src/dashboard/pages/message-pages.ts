import { type Html, html } from '../html.js';
import { barePage, layout, type PageContext } from './layout.js';

/** The sign-in form: a token field posted with the CSRF token; `next` brings the browser back. */
export function loginPage(csrfToken: string, next: string, failed: boolean): Html {
  return barePage(
    'Sign in',
    html`<h1>Sign in</h1>
      ${failed ? html`<p class="error" data-testid="login-failed">That is not the dashboard's token.</p>` : ''}
      <p class="note">
        This dashboard is protected by a token (--token, TXOUTBOX_DASHBOARD_TOKEN or dashboard.token in txoutbox.yaml).
      </p>
      <form class="actions" method="post" action="/login">
        <input type="hidden" name="csrf" value="${csrfToken}" />
        <input type="hidden" name="next" value="${next}" />
        <label
          >Token <input type="password" name="token" autocomplete="current-password" required data-testid="login-token"
        /></label>
        <button type="submit" data-testid="login-button">Sign in</button>
      </form>`,
  );
}

/** An error page: the navigation stays, so the operator can go elsewhere. */
export function errorPage(context: PageContext | undefined, title: string, message: string): Html {
  const content = html`<h1>${title}</h1>
    <p class="error" data-testid="error-message">${message}</p>
    <p><a href="/">Back to the queues</a></p>`;
  return context === undefined ? barePage(title, content) : layout(context, { title, section: 'none', content });
}
