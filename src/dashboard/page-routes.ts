import type { PeekState } from '../queues/peek.js';
import { type DashboardContext, pageContext } from './dashboard-context.js';
import { type DashboardResponse, page } from './http-response.js';
import { dlqConfirmPage } from './pages/dlq-confirm-page.js';
import { CELL_PREVIEW_BYTES, dlqListPage } from './pages/dlq-list-page.js';
import { BODY_PREVIEW_BYTES, dlqRowPage } from './pages/dlq-row-page.js';
import { errorPage } from './pages/message-pages.js';
import { overviewPage } from './pages/overview-page.js';
import { processesPage } from './pages/processes-page.js';
import { queuePage } from './pages/queue-page.js';
import { dlqFilterOf, optional } from './query-params.js';

/** Throughput history on the overview and queue pages: status() adds the current minute to these. */
const MINUTES = 15;
const PAGE_ROWS = 50;

export async function overview(context: DashboardContext): Promise<DashboardResponse> {
  const report = await context.status.read({ minutes: MINUTES });
  return page(200, overviewPage(pageContext(context), report));
}

export async function queue(context: DashboardContext, name: string, query: URLSearchParams): Promise<DashboardResponse> {
  const state = optional(query, 'state') as PeekState | undefined;
  const cursor = optional(query, 'cursor');
  // peekPreviews() validates state and cursor (InvalidOptionError: a 400 page naming them). Previews,
  // not peek(): the page shows 1 KiB of each body and refreshes every few seconds per open tab.
  const [report, rows] = await Promise.all([
    context.status.read({ queues: [name], minutes: MINUTES }),
    context.outbox.peekPreviews(name, {
      limit: PAGE_ROWS,
      // The runner knows each consumer's lease TTL; a queue it does not consume gets the option's.
      leaseTtlMs: context.options.leaseTtlMsOf?.(name) ?? context.options.leaseTtlMs,
      ...(state === undefined ? {} : { state }),
      ...(cursor === undefined ? {} : { cursor }),
    }),
  ]);
  const status = report.queues.find((q) => q.queue === name);
  return page(200, queuePage(pageContext(context), { queue: name, status, page: rows, state, cursor, query }));
}

/** The DLQ pages of an Outbox without a DLQ table: one explanation instead of an error. */
function noDlq(context: DashboardContext): DashboardResponse | undefined {
  if (context.outbox.dlqTable !== undefined) return undefined;
  return page(
    404,
    errorPage(
      pageContext(context),
      'No DLQ table',
      `This outbox (${context.outbox.table}) has no DLQ table: terminal rows are deleted, not archived. Construct the Outbox without dlqTable: false (or remove dlqTable: false from txoutbox.yaml) and migrate.`,
    ),
  );
}

export async function dlqList(context: DashboardContext, query: URLSearchParams): Promise<DashboardResponse> {
  const missing = noDlq(context);
  if (missing !== undefined) return missing;
  const filter = dlqFilterOf(query);
  const cursor = optional(query, 'cursor');
  // Previews, not rows: the page shows 120 bytes of each body, so it never reads a whole one.
  const rows = await context.outbox.dlq.listPreviews({
    limit: PAGE_ROWS,
    bodyPreviewBytes: CELL_PREVIEW_BYTES,
    ...(filter.queue === undefined ? {} : { queue: filter.queue }),
    ...(filter.reason === undefined ? {} : { reason: filter.reason }),
    ...(cursor === undefined ? {} : { cursor }),
  });
  return page(200, dlqListPage(pageContext(context), { filter, page: rows, cursor, query }));
}

export async function dlqRow(context: DashboardContext, id: string): Promise<DashboardResponse> {
  const missing = noDlq(context);
  if (missing !== undefined) return missing;
  // getPreview() validates the id (InvalidOptionError: 400). A preview, not get(): the page shows
  // 16 KiB of a body, and a dead letter of hundreds of MB would be read whole into this process.
  const letter = await context.outbox.dlq.getPreview(id, { bodyPreviewBytes: BODY_PREVIEW_BYTES });
  if (letter === null) {
    return page(
      404,
      errorPage(pageContext(context), 'Not found', `No dead letter with id ${id} in ${context.outbox.dlqTable ?? ''}.`),
    );
  }
  return page(200, dlqRowPage(pageContext(context), letter));
}

export async function dlqConfirm(context: DashboardContext, query: URLSearchParams): Promise<DashboardResponse> {
  const missing = noDlq(context);
  if (missing !== undefined) return missing;
  const action = query.get('action');
  if (action !== 'redrive' && action !== 'purge') {
    return page(400, errorPage(pageContext(context), 'Bad request', 'action must be redrive or purge.'));
  }
  // The confirmation pins the DLQ's last id now: rows that die while the page is open are left.
  const throughId = await context.outbox.dlq.lastId();
  return page(200, dlqConfirmPage(pageContext(context), action, dlqFilterOf(query), context.outbox.dlqTable ?? '', throughId));
}

export async function processes(context: DashboardContext): Promise<DashboardResponse> {
  const source = context.options.processes;
  return page(200, processesPage(pageContext(context), source === undefined ? undefined : await source()));
}
