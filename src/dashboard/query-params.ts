import type { DlqFailureReason } from '../dlq/dlq-options.js';
import { InvalidOptionError } from '../errors.js';
import { type DlqFilterQuery, REASONS } from './pages/dlq-list-page.js';
import { queueOfSegment } from './pages/urls.js';

/** A parameter's value, or undefined when it is absent or empty (an empty form field means "any"). */
export function optional(params: URLSearchParams, name: string): string | undefined {
  const value = params.get(name);
  return value === null || value === '' ? undefined : value;
}

/** The DLQ filter of a query string or a form: `queue` and `reason` (one of the three reasons). */
export function dlqFilterOf(params: URLSearchParams): DlqFilterQuery {
  const reason = optional(params, 'reason');
  if (reason !== undefined && !REASONS.includes(reason as DlqFailureReason)) {
    throw new InvalidOptionError({
      option: 'reason',
      value: reason,
      expected: REASONS.map((r) => `'${r}'`).join(', '),
      fix: 'Pick one of these, or leave the reason empty for every reason.',
    });
  }
  return { queue: optional(params, 'queue'), reason: reason as DlqFailureReason | undefined };
}

/** `/queues/<segment>[/<action>]` → the queue name (queueOfSegment) and the action; undefined for other paths. */
export function queuePath(path: string): { queue: string; action: string | undefined } | undefined {
  const match = /^\/queues\/([^/]+)(?:\/(pause|resume))?$/.exec(path);
  if (match?.[1] === undefined) return undefined;
  let queue: string;
  try {
    queue = queueOfSegment(match[1]);
  } catch (error) {
    throw new InvalidOptionError({ option: 'queue', value: match[1], expected: 'a percent-encoded queue name', cause: error });
  }
  return { queue, action: match[2] };
}
