import type { QueueStatus, QueueStatusReport } from '../../queues/queue-status.js';
import { formatAge, formatCount, formatRate, formatTime } from '../format.js';
import { type Html, html } from '../html.js';
import { layout, type PageContext } from './layout.js';
import { sparkline } from './sparkline.js';
import { dlqHref, queueHref } from './urls.js';

function pausedCell(status: QueueStatus): Html {
  if (!status.paused) return html`<span class="badge ok">consuming</span>`;
  const since = status.pausedAt === null ? '' : ` since ${formatTime(status.pausedAt)}`;
  const reason = status.pauseReason === null ? '' : `: ${status.pauseReason}`;
  return html`<span class="badge paused" title="${`paused${since}${reason}`}">paused</span>`;
}

function row(status: QueueStatus): Html {
  const { estimated } = status;
  return html`<tr data-testid="queue-row" data-queue="${status.queue}">
    <td><a class="name" href="${queueHref(status.queue)}" data-testid="queue-link">${status.queue}</a></td>
    <td data-testid="queue-state">${pausedCell(status)}</td>
    <td class="num" data-testid="depth-ready">${formatCount(status.ready, estimated.ready)}</td>
    <td class="num" data-testid="depth-scheduled">${formatCount(status.scheduled, estimated.scheduled)}</td>
    <td class="num" data-testid="depth-leased">${formatCount(status.leased, estimated.leased)}</td>
    <td class="num" data-testid="depth-dlq">
      ${
        status.dlq === undefined
          ? '—'
          : html`<a href="${dlqHref({ queue: status.queue })}">${formatCount(status.dlq, estimated.dlq)}</a>`
      }
    </td>
    <td class="num" data-testid="oldest-age">${status.ready === 0 ? '—' : formatAge(status.oldestReadyAgeMs)}</td>
    <td class="num" data-testid="handled-per-minute">${formatRate(status.handledPerMinute)}</td>
    <td data-testid="throughput">${sparkline(status.throughput)}</td>
  </tr>`;
}

/** `/`: every queue's depth by state, DLQ count, oldest ready age, pause state and throughput. */
export function overviewPage(context: PageContext, report: QueueStatusReport): Html {
  // status() returns the asked minutes plus the current, partial one: the header counts the bars.
  const minutes = Math.max(0, (report.queues[0]?.throughput.length ?? 1) - 1);
  const table =
    report.queues.length === 0
      ? html`<p class="note" data-testid="no-queues">No queue has pending rows, dead letters, a pause or recent throughput.</p>`
      : html`<table>
          <thead>
            <tr>
              <th>Queue</th>
              <th>State</th>
              <th class="num">Ready</th>
              <th class="num">Scheduled</th>
              <th class="num">Leased</th>
              <th class="num">DLQ</th>
              <th class="num">Oldest ready</th>
              <th class="num">Handled/min</th>
              <th data-testid="throughput-header">Last ${minutes} min + now</th>
            </tr>
          </thead>
          <tbody>
            ${report.queues.map(row)}
          </tbody>
        </table>`;
  return layout(context, {
    title: 'Queues',
    section: 'overview',
    content: html`<h1>Queues</h1>
      <div id="overview-queues" data-live>
        ${table}
        <p class="note">
          As of ${formatTime(report.at)} (database clock). Handled/min: the last 5 minutes' average. ~: a planner estimate. Bars:
          handled per minute, oldest first, the current minute last; dead-lettered in red.
        </p>
      </div>`,
  });
}
