import type { DeadLetterPreview, DlqPreviewPage } from '../../dlq/dead-letters.js';
import type { DlqFailureReason } from '../../dlq/dlq-options.js';
import { formatBytes, formatTime } from '../format.js';
import { type Html, html } from '../html.js';
import { canAct, csrfField, layout, type PageContext } from './layout.js';
import { notice } from './notice.js';
import { dlqActionHref, dlqHref, dlqRowHref, withQuery } from './urls.js';

export const REASONS: readonly DlqFailureReason[] = ['max_deliveries', 'retry_terminal', 'rejected'];
/** What the body cell shows, and all the list asks the database for: a 1 MB body stays in the database. */
export const CELL_PREVIEW_BYTES = 120;

export interface DlqFilterQuery {
  readonly queue: string | undefined;
  readonly reason: DlqFailureReason | undefined;
}

export interface DlqListData {
  readonly filter: DlqFilterQuery;
  readonly page: DlqPreviewPage;
  readonly cursor: string | undefined;
  readonly query: URLSearchParams;
}

function filterForm(filter: DlqFilterQuery): Html {
  const options = REASONS.map((r) =>
    r === filter.reason ? html`<option value="${r}" selected>${r}</option>` : html`<option value="${r}">${r}</option>`,
  );
  return html`<form class="actions" method="get" action="/dlq" data-testid="dlq-filter">
    <label>Queue <input type="text" name="queue" value="${filter.queue ?? ''}" data-testid="filter-queue" /></label>
    <label
      >Reason
      <select name="reason" data-testid="filter-reason">
        <option value="">any</option>
        ${options}
      </select></label
    >
    <button type="submit">Filter</button>
    ${filter.queue !== undefined || filter.reason !== undefined ? html`<a href="/dlq">Clear</a>` : ''}
  </form>`;
}

function row(context: PageContext, letter: DeadLetterPreview): Html {
  const select = canAct(context)
    ? html`<td>
        <input
          type="checkbox"
          name="id"
          value="${letter.id}"
          form="dlq-selection"
          aria-label="${`select dead letter ${letter.id}`}"
          data-testid="dlq-select"
        />
      </td>`
    : '';
  const redrive = canAct(context)
    ? html`<td>
        <button type="submit" form="dlq-selection" name="only" value="${letter.id}" data-testid="redrive-one">Redrive</button>
      </td>`
    : '';
  return html`<tr data-testid="dlq-row" data-id="${letter.id}">
    ${select}
    <td class="num"><a href="${dlqRowHref(letter.id)}" data-testid="dlq-row-link">${letter.id}</a></td>
    <td><span class="name" data-testid="dlq-row-queue">${letter.queue}</span></td>
    <td>${letter.failureReason}</td>
    <td class="time" data-testid="dlq-row-failed">${formatTime(letter.failedAt)}</td>
    <td class="num">${letter.deliveriesCount}</td>
    <td><span class="name">${letter.lastExceptionType ?? '—'}</span></td>
    <td class="fill">
      <div class="clamp">
        <code data-testid="body-preview">${letter.bodyPreview}${letter.bodyPreviewTruncated ? '…' : ''}</code>
      </div>
      ${
        // Outside the clamp, so two lines of a long body never hide that it was cut, nor its size.
        letter.bodyPreviewTruncated
          ? html`<span class="note" data-testid="body-bytes">${formatBytes(letter.payloadBytes)} in all</span>`
          : ''
      }
    </td>
    ${redrive}
  </tr>`;
}

function actions(context: PageContext, filter: DlqFilterQuery, empty: boolean): Html {
  if (!canAct(context) || empty) return html``;
  const scope = { queue: filter.queue, reason: filter.reason };
  const matching = filter.queue === undefined && filter.reason === undefined ? 'every dead letter' : 'all matching';
  return html`<div class="actions">
    <button type="submit" form="dlq-selection" name="scope" value="selected" data-testid="redrive-selected">
      Redrive selected
    </button>
    <a class="button" href="${withQuery('/dlq/confirm', { action: 'redrive', ...scope })}" data-testid="redrive-all"
      >Redrive ${matching}…</a
    >
    <a class="button danger" href="${withQuery('/dlq/confirm', { action: 'purge', ...scope })}" data-testid="purge-all"
      >Purge ${matching}…</a
    >
  </div>`;
}

/** `/dlq`: dead letters newest first, filtered by queue and reason, paged; redrive one, selected or all. */
export function dlqListPage(context: PageContext, data: DlqListData): Html {
  const { filter, page } = data;
  const empty = page.rows.length === 0;
  const selection = canAct(context)
    ? html`<form id="dlq-selection" method="post" action="${dlqActionHref('redrive', filter)}">${csrfField(context)}</form>`
    : '';
  const head = html`<tr>
    ${canAct(context) ? html`<th><span class="note">select</span></th>` : ''}
    <th class="num">Id</th>
    <th>Queue</th>
    <th>Reason</th>
    <th>Failed</th>
    <th class="num">Deliveries</th>
    <th>Exception</th>
    <th>Body</th>
    ${canAct(context) ? html`<th></th>` : ''}
  </tr>`;
  const table = empty
    ? html`<p class="note" data-testid="no-dead-letters">No dead letters${data.cursor === undefined ? '' : ' on this page'}.</p>`
    : html`<table>
        <thead>
          ${head}
        </thead>
        <tbody>
          ${page.rows.map((r) => row(context, r))}
        </tbody>
      </table>`;
  const scope = { queue: filter.queue, reason: filter.reason };
  const pager = html`<p class="pager">
    ${
      data.cursor === undefined ? '' : html`<a href="${dlqHref(scope)}" data-testid="first-page">First page</a>`
    }${page.nextCursor === null ? '' : html`<a href="${dlqHref({ ...scope, cursor: page.nextCursor })}" data-testid="next-page">Next page</a>`}
  </p>`;
  return layout(context, {
    title: 'Dead letters',
    section: 'dlq',
    content: html`<h1>Dead letters</h1>
      ${notice(data.query)}
      <p class="note" data-testid="dlq-not-live">
        Newest first. This list does not refresh itself, so the boxes you tick stay ticked: reload it to see new dead letters.
      </p>
      ${filterForm(filter)} ${selection} ${actions(context, filter, empty)} ${table} ${pager}`,
  });
}
