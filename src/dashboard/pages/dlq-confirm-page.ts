import { describeDlqFilter } from '../../dlq/describe-filter.js';
import { type Html, html } from '../html.js';
import type { DlqFilterQuery } from './dlq-list-page.js';
import { canAct, csrfField, layout, type PageContext } from './layout.js';
import { dlqActionHref, dlqHref } from './urls.js';

export type BulkAction = 'redrive' | 'purge';

/**
 * `/dlq/confirm?action=purge&queue=…`: the confirmation step of a bulk redrive or purge, a page of
 * its own so that it works without JavaScript (no `confirm()` dialog). Showing it changes nothing;
 * its button posts the action with `confirm=yes`.
 */
export function dlqConfirmPage(
  context: PageContext,
  action: BulkAction,
  filter: DlqFilterQuery,
  dlqTable: string,
  throughId: string,
): Html {
  const what = describeDlqFilter(filter);
  // Read-only: no form carrying the CSRF token anywhere (the POST would be refused anyway).
  if (!canAct(context))
    return layout(context, {
      title: `Confirm ${action}`,
      section: 'dlq',
      content: html`<h1>${action === 'purge' ? 'Purge' : 'Redrive'} ${what}</h1>
        <p class="note">This dashboard is read-only: it cannot ${action} dead letters.</p>
        <a href="${dlqHref({ queue: filter.queue, reason: filter.reason })}">Back to the dead letters</a>`,
    });
  const warning =
    action === 'purge'
      ? html`<p class="error">Purging deletes them from ${dlqTable} for good: they cannot be redriven afterwards.</p>`
      : html`<p class="note">They go back into the outbox with fresh counters and are delivered again.</p>`;
  return layout(context, {
    title: `Confirm ${action}`,
    section: 'dlq',
    content: html`<h1>${action === 'purge' ? 'Purge' : 'Redrive'} ${what}?</h1>
      ${warning}
      <p class="note">
        Only the dead letters there now (ids up to ${throughId}): any that arrive while this page is open are left.
      </p>
      <form class="actions" method="post" action="${dlqActionHref(action, filter)}">
        ${csrfField(context)}
        <input type="hidden" name="scope" value="filter" />
        <input type="hidden" name="confirm" value="yes" />
        <input type="hidden" name="through" value="${throughId}" />
        <button type="submit" class="${action === 'purge' ? 'danger' : ''}" data-testid="confirm-button">
          Yes, ${action} ${what}
        </button>
        <a href="${dlqHref({ queue: filter.queue, reason: filter.reason })}" data-testid="cancel-link">Cancel</a>
      </form>`,
  });
}
