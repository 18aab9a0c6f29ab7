import type { PeekedPreview, PeekPreviewPage, PeekState } from '../../queues/peek.js';
import type { QueueStatus } from '../../queues/queue-status.js';
import { formatAge, formatBytes, formatCount, formatRate, formatTime, previewOf } from '../format.js';
import { type Html, html } from '../html.js';
import { headersTable } from './headers-table.js';
import { canAct, csrfField, layout, type PageContext } from './layout.js';
import { notice } from './notice.js';
import { sparkline } from './sparkline.js';
import { dlqHref, queueActionHref, queueHref } from './urls.js';

/** The table shows this much of each body; the row's <details> shows peek's whole 1 KiB preview. */
const CELL_PREVIEW_BYTES = 160;

export interface QueuePageData {
  readonly queue: string;
  readonly status: QueueStatus | undefined;
  readonly page: PeekPreviewPage;
  readonly state: PeekState | undefined;
  readonly cursor: string | undefined;
  readonly query: URLSearchParams;
}

function summary(status: QueueStatus | undefined): Html {
  if (status === undefined) return html`<p class="note">No status for this queue.</p>`;
  const { estimated } = status;
  const pause = status.paused
    ? html`<span class="badge paused" data-testid="queue-paused">paused</span> since
        ${formatTime(status.pausedAt)}${
          status.pauseReason === null ? '' : html`: <span data-testid="pause-reason">${status.pauseReason}</span>`
        }`
    : html`<span class="badge ok" data-testid="queue-consuming">consuming</span>`;
  return html`<dl class="fields">
    <dt>State</dt>
    <dd>${pause}</dd>
    <dt>Ready</dt>
    <dd data-testid="depth-ready">${formatCount(status.ready, estimated.ready)}</dd>
    <dt>Scheduled</dt>
    <dd data-testid="depth-scheduled">${formatCount(status.scheduled, estimated.scheduled)}</dd>
    <dt>Leased</dt>
    <dd>
      <span data-testid="depth-leased">${formatCount(status.leased, estimated.leased)}</span>
      ${status.leased === 0 ? '' : html`<span class="note">(expired leases included; the list shows them as ready)</span>`}
    </dd>
    <dt>Dead letters</dt>
    <dd data-testid="depth-dlq">
      ${
        status.dlq === undefined
          ? 'no DLQ table'
          : html`<a href="${dlqHref({ queue: status.queue })}">${formatCount(status.dlq, estimated.dlq)}</a>`
      }
    </dd>
    <dt>Oldest ready</dt>
    <dd data-testid="oldest-age">${status.ready === 0 ? '—' : formatAge(status.oldestReadyAgeMs)}</dd>
    <dt>Handled/min</dt>
    <dd>
      <span class="spark-rate" data-testid="handled-per-minute">${formatRate(status.handledPerMinute)}</span
      >${sparkline(status.throughput)}
    </dd>
  </dl>`;
}

/**
 * Pause or Resume, in a live region of its own: when another operator pauses the queue, the page
 * offers Resume without a reload. Its `data-live-key` is the state the form acts on, so live.js
 * leaves a half-typed reason alone while the state holds, and swaps the form when it changed.
 */
function pauseControls(context: PageContext, queue: string, status: QueueStatus | undefined): Html {
  if (!canAct(context)) return html``;
  const paused = status?.paused === true;
  return html`<div id="queue-control" data-live data-live-key="${paused ? 'paused' : 'consuming'}">
    ${paused ? resumeForm(context, queue) : pauseForm(context, queue)}
  </div>`;
}

function resumeForm(context: PageContext, queue: string): Html {
  return html`<form class="actions" method="post" action="${queueActionHref(queue, 'resume')}">
    ${csrfField(context)} <button type="submit" data-testid="resume-button">Resume</button>
  </form>`;
}

function pauseForm(context: PageContext, queue: string): Html {
  return html`<form class="actions" method="post" action="${queueActionHref(queue, 'pause')}">
    ${csrfField(context)}
    <label
      >Reason
      <input
        type="text"
        name="reason"
        maxlength="500"
        size="40"
        placeholder="why, for the next operator"
        data-testid="pause-reason-input"
    /></label>
    <button type="submit" class="danger" data-testid="pause-button">Pause</button>
  </form>`;
}

/**
 * A row whose lease ran out reads as ready (a claim would take it now), as peek() pages it; the
 * summary's status() counts it as leased until then. Saying which it is keeps the two apart.
 */
function stateOf(row: PeekedPreview): string {
  return row.state === 'ready' && row.acquiredAt !== null ? 'ready (lease expired)' : row.state;
}

function pendingRow(row: PeekedPreview): Html {
  const cell = previewOf(row.bodyPreview, CELL_PREVIEW_BYTES);
  const truncated = cell.truncated || row.bodyPreviewTruncated;
  return html`<tr data-testid="pending-row" data-id="${row.id}" data-state="${row.state}">
    <td class="num">${row.id}</td>
    <td>${stateOf(row)}</td>
    <td class="time">${formatTime(row.createdAt)}</td>
    <td class="time">${formatTime(row.nextAttemptAt)}</td>
    <td class="num">${row.deliveriesCount}</td>
    <td class="fill">
      <details>
        <summary><code data-testid="body-preview">${cell.text}${truncated ? '…' : ''}</code></summary>
        <pre>${row.bodyPreview}${row.bodyPreviewTruncated ? '\n… (preview: the first 1 KiB)' : ''}</pre>
        ${headersTable(row.headers)}
        <p class="note">
          payload
          ${formatBytes(row.payloadBytes)}${row.timerId === null ? '' : html`, timer <code>${row.timerId}</code>`}${
            row.acquiredAt === null ? '' : html`, leased at ${formatTime(row.acquiredAt)}`
          }
        </p>
      </details>
    </td>
  </tr>`;
}

const STATES: readonly (PeekState | undefined)[] = [undefined, 'ready', 'scheduled', 'leased'];

/** `/queues/:queue`: the queue's numbers, pause/resume, and its pending rows (peek, paged). */
export function queuePage(context: PageContext, data: QueuePageData): Html {
  const { queue, page, state } = data;
  const filters = STATES.map((s) => {
    const label = s ?? 'all';
    return s === state
      ? html`<strong>${label}</strong>`
      : html`<a href="${queueHref(queue, { state: s })}" data-testid="${`state-${label}`}">${label}</a>`;
  });
  const rows =
    page.rows.length === 0
      ? html`<p class="note" data-testid="no-pending-rows">
          No ${state ?? 'pending'} rows${data.cursor === undefined ? '' : ' on this page'}.
        </p>`
      : html`<table>
          <thead>
            <tr>
              <th class="num">Id</th>
              <th>State</th>
              <th>Created</th>
              <th>Due</th>
              <th class="num">Deliveries</th>
              <th>Body (click for headers)</th>
            </tr>
          </thead>
          <tbody>
            ${page.rows.map(pendingRow)}
          </tbody>
        </table>`;
  const pager = html`<p class="pager">
    ${data.cursor === undefined ? '' : html`<a href="${queueHref(queue, { state })}" data-testid="first-page">First page</a>`}${
      page.nextCursor === null
        ? ''
        : html`<a href="${queueHref(queue, { state, cursor: page.nextCursor })}" data-testid="next-page">Next page</a>`
    }
  </p>`;
  return layout(context, {
    title: `Queue ${queue}`,
    section: 'overview',
    content: html`<p><a href="/">Queues</a> /</p>
      <h1 data-testid="queue-name">${queue}</h1>
      ${notice(data.query)}
      <div id="queue-summary" data-live>${summary(data.status)}</div>
      ${pauseControls(context, queue, data.status)}
      <h2>Pending rows</h2>
      <p class="note">Oldest first, read without leasing them. State: ${filters.map((f, i) => (i === 0 ? f : html` · ${f}`))}</p>
      <div id="queue-rows" data-live>${rows}${pager}</div>`,
  });
}
