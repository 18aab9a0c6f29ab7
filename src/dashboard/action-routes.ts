import { describeDlqFilter } from '../dlq/describe-filter.js';
import type { DlqFilter } from '../dlq/dlq-options.js';
import { DlqProgress } from '../dlq/dlq-progress.js';
import { errorMessage, InvalidOptionError } from '../errors.js';
import { type DashboardContext, pageContext } from './dashboard-context.js';
import { type DashboardResponse, page, redirect } from './http-response.js';
import type { DlqFilterQuery } from './pages/dlq-list-page.js';
import { errorPage } from './pages/message-pages.js';
import { noticeQuery } from './pages/notice.js';
import { dlqHref, queueHref } from './pages/urls.js';
import { dlqFilterOf, optional } from './query-params.js';

function badRequest(context: DashboardContext, message: string): DashboardResponse {
  return page(400, errorPage(pageContext(context), 'Bad request', message));
}

export async function pause(context: DashboardContext, queue: string, form: URLSearchParams): Promise<DashboardResponse> {
  const reason = optional(form, 'reason')?.trim();
  const state = await context.outbox.pause(queue, reason === undefined || reason === '' ? {} : { reason });
  // The redirect's page must show the pause, not a status read from before it.
  context.status.invalidate();
  // Every action is logged at info: who paused, redrove or purged is asked after an incident.
  context.options.logger.info({ queue, reason: state.reason, changed: state.changed }, 'dashboard: paused a queue');
  return redirect(queueHref(queue, noticeQuery(state.changed ? 'paused' : 'unchanged')));
}

export async function resume(context: DashboardContext, queue: string): Promise<DashboardResponse> {
  const state = await context.outbox.resume(queue);
  context.status.invalidate();
  context.options.logger.info({ queue, changed: state.changed }, 'dashboard: resumed a queue');
  return redirect(queueHref(queue, noticeQuery(state.changed ? 'resumed' : 'unchanged')));
}

/**
 * A redrive or purge that failed after some of its batches committed: logged at error with the
 * count (the audit line an incident review asks for), and the operator is shown it with the error.
 * A bad option is the API's message, as for every request (routes.ts).
 */
function failedPartWay(
  context: DashboardContext,
  operation: 'redrive' | 'purge',
  progress: DlqProgress,
  error: unknown,
  what: Readonly<Record<string, string>>,
): DashboardResponse {
  if (error instanceof InvalidOptionError) throw error;
  const verb = operation === 'purge' ? 'purged' : 'redriven';
  const { dlqTable } = context.outbox;
  context.options.logger.error(
    { dlqTable, [verb]: progress.done, ...what, err: errorMessage(error) },
    `dashboard: ${operation} failed part way`,
  );
  return page(
    500,
    errorPage(
      pageContext(context),
      `The ${operation} failed part way`,
      `${errorMessage(error)}. ${progress.partWay(verb, dlqTable)}.`,
    ),
  );
}

/**
 * A DLQ action's filter (queue, reason): from the URL the form posts to (urls.ts dlqActionHref),
 * never from its fields, whose line breaks a browser sends as CRLF. A form that still carries them
 * (a page served before this version) is refused: read as no filter, a purge would take every row.
 */
function actionFilter(form: URLSearchParams, query: URLSearchParams): DlqFilterQuery {
  if (form.has('queue') || form.has('reason')) {
    throw new InvalidOptionError({
      option: 'queue',
      value: form.get('queue') ?? form.get('reason'),
      expected: 'the filter in the URL the form posts to',
      fix: 'The page was served by an earlier version of the dashboard: reload it, then act again.',
    });
  }
  return dlqFilterOf(query);
}

/**
 * A bulk action's filter: only from the confirmation page (`scope=filter`, `confirm=yes`), bounded
 * by the last id the page pinned (`through`): the rows there when the operator looked, no later ones.
 */
function confirmedFilter(form: URLSearchParams, shown: DlqFilterQuery): DlqFilter | undefined {
  if (form.get('scope') !== 'filter' || form.get('confirm') !== 'yes') return undefined;
  const { queue, reason } = shown;
  const through = optional(form, 'through');
  return {
    ...(queue === undefined && reason === undefined ? { all: true } : {}),
    ...(queue === undefined ? {} : { queue }),
    ...(reason === undefined ? {} : { reason }),
    ...(through === undefined ? {} : { throughId: through }),
  };
}

/** For the log line: the first 20 ids (a form may tick a thousand), or the filter in words. */
function describeSelection(target: readonly string[] | DlqFilter, shown: DlqFilterQuery): string {
  if (!Array.isArray(target)) return describeDlqFilter(shown);
  const ids = target as readonly string[];
  return `ids ${ids.slice(0, 20).join(', ')}${ids.length > 20 ? ` … (${ids.length} in all)` : ''}`;
}

/**
 * Redrives one dead letter (`only`), the ticked ones (`scope=selected`, `id`…), or every one a
 * confirmed filter selects; then back to the list with the count.
 */
export async function redrive(
  context: DashboardContext,
  form: URLSearchParams,
  query: URLSearchParams,
): Promise<DashboardResponse> {
  const shown = actionFilter(form, query);
  const only = optional(form, 'only');
  const filter = confirmedFilter(form, shown);
  let target: readonly string[] | DlqFilter;
  if (only !== undefined) target = [only];
  else if (form.get('scope') === 'selected') {
    target = form.getAll('id');
    if (target.length === 0)
      return badRequest(context, 'No dead letter was selected: tick the rows to redrive, then press Redrive selected.');
  } else if (filter !== undefined) target = filter;
  else
    return badRequest(context, 'Redriving every matching dead letter needs the confirmation page: use the Redrive all… button.');
  const selection = describeSelection(target, shown);
  const progress = new DlqProgress();
  let done: { redriven: number; keyBusy: number };
  try {
    // Rows whose ordering key a transaction held stay in the DLQ (keyBusy): the list shows them.
    done = await context.outbox.dlq.redrive(target, { onBatch: progress.onBatch });
  } catch (error) {
    return failedPartWay(context, 'redrive', progress, error, { selection });
  } finally {
    // Redriven rows are pending again and the DLQ counts dropped: the overview shows it at once.
    context.status.invalidate();
  }
  const { redriven, keyBusy } = done;
  context.options.logger.info(
    { dlqTable: context.outbox.dlqTable, redriven, keyBusy, selection },
    'dashboard: redrove dead letters',
  );
  return redirect(dlqHref({ queue: shown.queue, reason: shown.reason, ...noticeQuery('redriven', redriven, keyBusy) }));
}

export async function purge(
  context: DashboardContext,
  form: URLSearchParams,
  query: URLSearchParams,
): Promise<DashboardResponse> {
  const shown = actionFilter(form, query);
  const filter = confirmedFilter(form, shown);
  if (filter === undefined) {
    return badRequest(context, 'Purging needs the confirmation page: use the Purge… button of the dead-letter list.');
  }
  const described = describeDlqFilter(shown);
  const progress = new DlqProgress();
  let purged: number;
  let remaining: number;
  try {
    // Rows another redrive or purge held throughout stay (remaining): the notice says so.
    ({ purged, remaining } = await context.outbox.dlq.purge(filter, { onBatch: progress.onBatch }));
  } catch (error) {
    return failedPartWay(context, 'purge', progress, error, { filter: described });
  } finally {
    context.status.invalidate();
  }
  context.options.logger.info(
    { dlqTable: context.outbox.dlqTable, purged, remaining, filter: described },
    'dashboard: purged dead letters',
  );
  return redirect(dlqHref({ queue: shown.queue, reason: shown.reason, ...noticeQuery('purged', purged, remaining) }));
}
