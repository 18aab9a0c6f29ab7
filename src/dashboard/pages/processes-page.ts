import { type Html, html } from '../html.js';
import type { DashboardConsumer, DashboardProcesses } from '../processes.js';
import { layout, type PageContext } from './layout.js';
import { queueHref } from './urls.js';

function row(consumer: DashboardConsumer): Html {
  const health =
    consumer.wanted > 0 && consumer.ready === 0
      ? html`<span class="badge bad">not ready</span>`
      : consumer.ready < consumer.wanted
        ? html`<span class="badge paused">degraded</span>`
        : html`<span class="badge ok">ready</span>`;
  return html`<tr data-testid="consumer-row" data-consumer="${consumer.name}">
    <td><span class="name">${consumer.name}</span></td>
    <td>${health}</td>
    <td>${consumer.queues.map((q, i) => html`${i === 0 ? '' : ', '}<a class="name" href="${queueHref(q)}">${q}</a>`)}</td>
    <td class="num" data-testid="processes-wanted">${consumer.wanted}</td>
    <td class="num" data-testid="processes-alive">${consumer.alive}</td>
    <td class="num" data-testid="processes-ready">${consumer.ready}</td>
    <td class="num" data-testid="restarts">${consumer.restarts}</td>
    <td>${consumer.pids.join(', ')}</td>
  </tr>`;
}

/** `/processes`: the runner's consumers, their processes, restarts and readiness; a note when standalone. */
export function processesPage(context: PageContext, processes: DashboardProcesses | undefined): Html {
  const content =
    processes === undefined
      ? html`<p class="note" data-testid="standalone-note">
          This dashboard runs on its own (<code>txoutbox dashboard</code>): it sees the database, not the consumer processes.
          Enable <code>dashboard:</code> in <code>txoutbox.yaml</code> and <code>txoutbox run</code> serves it with this page
          filled in.
        </p>`
      : html`<div id="processes" data-live>
          <p>
            Runner:
            ${processes.ready ? html`<span class="badge ok" data-testid="runner-ready">ready</span>` : html`<span class="badge bad" data-testid="runner-not-ready">not ready</span>`}
          </p>
          ${
            processes.consumers.length === 0
              ? html`<p class="note">No consumers.</p>`
              : html`<table>
                  <thead>
                    <tr>
                      <th>Consumer</th>
                      <th>Health</th>
                      <th>Queues</th>
                      <th class="num">Wanted</th>
                      <th class="num">Alive</th>
                      <th class="num">Ready</th>
                      <th class="num">Restarts</th>
                      <th>Pids</th>
                    </tr>
                  </thead>
                  <tbody>
                    ${processes.consumers.map(row)}
                  </tbody>
                </table>`
          }
        </div>`;
  return layout(context, {
    title: 'Processes',
    section: 'processes',
    content: html`<h1>Processes</h1>
      ${content}`,
  });
}
