import { formatDurationMs } from '../util/duration.js';
import type { DlqFilter } from './dlq-options.js';

/**
 * What a DLQ filter selects, in words, for the operator asked to confirm it (`txoutbox dlq purge`,
 * the dashboard's confirmation page) and for the log line of the action: `every dead letter of
 * queue 'orders' with reason 'rejected' that failed more than 14d ago`; with nothing narrowing it,
 * `EVERY dead letter, of every queue`, in capitals because that is what a purge then deletes.
 */
export function describeDlqFilter(filter: Omit<DlqFilter, 'all'>): string {
  const failed = [
    filter.olderThanMs === undefined ? '' : `more than ${formatDurationMs(filter.olderThanMs)} ago`,
    filter.failedBefore === undefined ? '' : `before ${filter.failedBefore.toISOString()}`,
    filter.failedAfter === undefined ? '' : `after ${filter.failedAfter.toISOString()}`,
  ].filter((part) => part !== '');
  const parts = [
    filter.queue === undefined ? '' : `of queue '${filter.queue}'`,
    filter.reason === undefined ? '' : `with reason '${filter.reason}'`,
    failed.length === 0 ? '' : `that failed ${failed.join(' and ')}`,
  ].filter((part) => part !== '');
  return parts.length === 0 ? 'EVERY dead letter, of every queue' : `every dead letter ${parts.join(' ')}`;
}
