import type { DeadLetterPreview } from '../../dlq/dead-letters.js';
import { bodyKind, inspectBody } from '../../envelope/decode-body.js';
import { indentJsonText } from '../../envelope/json-text.js';
import { formatBytes, formatTime, type Preview, previewOf } from '../format.js';
import { type Html, html } from '../html.js';
import { headersTable } from './headers-table.js';
import { canAct, csrfField, layout, type PageContext } from './layout.js';
import { dlqActionHref, dlqHref, queueHref } from './urls.js';

/** The body shown on a dead letter's page: enough to read a large JSON document, never the whole 1 MB. */
export const BODY_PREVIEW_BYTES = 16 * 1024;
/** The subscriber bounds last_exception when it writes it; the page bounds it again. */
const EXCEPTION_PREVIEW_BYTES = 16 * 1024;

/**
 * The body as the page shows it, from the BODY_PREVIEW_BYTES the preview read: a whole body decoded
 * (JSON pretty-printed) as before; a longer one as its first bytes, read as text, with its size.
 */
function shownBody(letter: DeadLetterPreview): { preview: Preview; kind: string } {
  if (letter.bodyPreviewTruncated) {
    const kind = { json: 'JSON', text: 'text', bytes: 'bytes, shown as UTF-8' }[bodyKind(letter.headers)];
    return { preview: { text: letter.bodyPreview, truncated: true, bytes: letter.payloadBytes }, kind };
  }
  const body = inspectBody(letter.payloadHead, letter.headers);
  if (Buffer.isBuffer(body) || typeof body === 'string') {
    return { preview: previewOf(body, BODY_PREVIEW_BYTES), kind: typeof body === 'string' ? 'text' : 'bytes, shown as UTF-8' };
  }
  // Indented as written, not parsed and printed again: a number past 2^53 keeps its digits.
  return { preview: previewOf(indentJsonText(letter.payloadHead.toString('utf8')), BODY_PREVIEW_BYTES), kind: 'JSON' };
}

/** `/dlq/:id`: one dead letter with its headers, a body preview and its last exception; redrive it. */
export function dlqRowPage(context: PageContext, letter: DeadLetterPreview): Html {
  const { preview: body, kind } = shownBody(letter);
  const exception = letter.lastException === null ? undefined : previewOf(letter.lastException, EXCEPTION_PREVIEW_BYTES);
  const redrive = canAct(context)
    ? html`<form class="actions" method="post" action="${dlqActionHref('redrive', { queue: letter.queue })}">
        ${csrfField(context)} <input type="hidden" name="only" value="${letter.id}" />
        <button type="submit" data-testid="redrive-one">Redrive this dead letter</button>
      </form>`
    : '';
  return layout(context, {
    title: `Dead letter ${letter.id}`,
    section: 'dlq',
    content: html`<p>
        <a href="${dlqHref()}">Dead letters</a> / <a href="${dlqHref({ queue: letter.queue })}">${letter.queue}</a> /
      </p>
      <h1>Dead letter ${letter.id}</h1>
      ${redrive}
      <dl class="fields" data-testid="dlq-fields">
        <dt>Queue</dt>
        <dd><a href="${queueHref(letter.queue)}" data-testid="dlq-queue">${letter.queue}</a></dd>
        <dt>Reason</dt>
        <dd data-testid="dlq-reason">${letter.failureReason}</dd>
        <dt>Failed</dt>
        <dd>${formatTime(letter.failedAt)}</dd>
        <dt>Created</dt>
        <dd>${formatTime(letter.createdAt)}</dd>
        <dt>First / last attempt</dt>
        <dd>${formatTime(letter.firstAttemptAt)} / ${formatTime(letter.lastAttemptAt)}</dd>
        <dt>Deliveries</dt>
        <dd>${letter.deliveriesCount} (attempts ${letter.attemptsCount})</dd>
        <dt>Outbox id</dt>
        <dd>${letter.originalId}</dd>
        ${
          letter.timerId === null
            ? ''
            : html`<dt>Timer</dt>
                <dd><code>${letter.timerId}</code></dd>`
        }
      </dl>
      <h2>
        Last
        exception${letter.lastExceptionType === null ? '' : html`: <code data-testid="exception-type">${letter.lastExceptionType}</code>`}
      </h2>
      ${
        exception === undefined
          ? html`<p class="note">None recorded.</p>`
          : html`<pre data-testid="last-exception">
${exception.text}${exception.truncated ? `\n… (${formatBytes(exception.bytes)} in all)` : ''}</pre>`
      }
      <h2>Headers</h2>
      <div data-testid="dlq-headers">${headersTable(letter.headers)}</div>
      <h2>Body <span class="note">(${kind}, ${formatBytes(letter.payloadBytes)} stored)</span></h2>
      <pre data-testid="dlq-body">${body.text}</pre>
      ${body.truncated ? html`<p class="note" data-testid="body-truncated">Showing the first ${formatBytes(BODY_PREVIEW_BYTES)} of ${formatBytes(body.bytes)}.</p>` : ''}`,
  });
}
