import { integerOption } from '../util/integer-option.js';

/**
 * The byte budget of a page of rows read to be looked at: peek(), peekPreviews(), dlq.list() and
 * dlq.listPreviews() (architecture/operations.md, "A page's byte budget"). bytea holds up to 1 GB
 * a value, so `limit` rows alone bound nothing: a page of 100 dead letters of 50 MB each was 5 GB
 * read into the operator's process, or into the runner hosting the dashboard, during an incident.
 *
 * A page counts each row's stored bytes as the statement returns them (the payload, or the head of
 * it a preview selects; the headers' JSON text; the DLQ's last_exception) and stops before the row
 * that would pass the budget. The statement does the counting, so a row left out is never sent:
 * octet_length reads a TOASTed value's size from its header, the value itself stays on disk. The
 * first row of a page always comes, whatever its size, so a cursor always moves on: a page is at
 * most max(maxPageBytes, its first row). On the wire, bytea travels as hex (the DLQ: twice the
 * stored bytes) and peek's payload as base64 (4/3), decoded on arrival.
 */
export const DEFAULT_MAX_PAGE_BYTES = 8 * 1024 * 1024;
/** int4's largest value (the statements bind it as one): past any page a caller could mean. */
export const MAX_MAX_PAGE_BYTES = 2_147_483_647;

/** How much of each body a preview shows by default: 1 KiB. */
export const BODY_PREVIEW_BYTES = 1_024;
/** The most a preview may show: 64 KiB (what `txoutbox dlq list --json` and `queue peek --json` print of a body). */
export const MAX_BODY_PREVIEW_BYTES = 65_536;

export function resolveMaxPageBytes(value: unknown): number {
  return integerOption('maxPageBytes', value, 1, MAX_MAX_PAGE_BYTES, DEFAULT_MAX_PAGE_BYTES);
}

export function resolveBodyPreviewBytes(value: unknown): number {
  return integerOption('bodyPreviewBytes', value, 0, MAX_BODY_PREVIEW_BYTES, BODY_PREVIEW_BYTES);
}
