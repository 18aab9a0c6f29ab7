import { InvalidOptionError } from '../errors.js';
import { refuseUnstorable } from '../producer/publish-options.js';
import { resolveMaxPageBytes } from '../queues/peek-page-bytes.js';
import { isBigintId } from '../util/bigint-id.js';
import { integerOption } from '../util/integer-option.js';
import { rejectUnknownOptions } from '../util/known-options.js';
import { resolveOlderThanMs } from './retention-options.js';

/** Why a row is in the DLQ (the table's reason check). */
export type DlqFailureReason = 'max_deliveries' | 'retry_terminal' | 'rejected';
const REASONS: readonly DlqFailureReason[] = ['max_deliveries', 'retry_terminal', 'rejected'];

/** Which dead letters redrive and purge act on. Every field narrows; none at all needs `all: true`. */
export interface DlqFilter {
  readonly queue?: string;
  readonly reason?: DlqFailureReason;
  /**
   * Rows that failed strictly before this instant, at the millisecond a Date holds: failed_at
   * (microseconds) is compared as a row's `failedAt` reads it, truncated to the millisecond.
   */
  readonly failedBefore?: Date;
  /**
   * Rows that failed strictly after this instant, at the millisecond: a row's own `failedAt`
   * leaves out the row and every row that failed in the same millisecond.
   */
  readonly failedAfter?: Date;
  /**
   * Rows that failed more than this many milliseconds ago by the database's clock (the clock that
   * stamped failed_at), read once when the call starts: a long purge does not chase rows that age
   * past the line while it runs. With failedBefore too, the earlier of the two applies.
   */
  readonly olderThanMs?: number;
  /** Every row (with the other fields, if any): an empty filter must be asked for, never an accident. */
  readonly all?: boolean;
  /**
   * Only rows whose DLQ id is at most this one: the DLQ's last id when the operator looked
   * (`dlq.lastId()`), so rows that died after the confirmation are left alone. The dashboard's
   * confirmation page pins it. Without it, the call is bounded by the last id when it starts.
   */
  readonly throughId?: string;
}

export interface DlqListOptions {
  readonly queue?: string;
  readonly reason?: DlqFailureReason;
  /** Strictly before, at the millisecond (as DlqFilter's). */
  readonly failedBefore?: Date;
  /** Strictly after, at the millisecond (as DlqFilter's). */
  readonly failedAfter?: Date;
  /** Rows per page. @default 50, at most 1,000 */
  readonly limit?: number;
  /** `nextCursor` of the previous page (opaque). */
  readonly cursor?: string;
  /**
   * The page's byte budget: rows stop before the one whose stored bytes (payload, or a preview's
   * head; last exception; headers) would pass it, and the page says `limitedByBytes`. Its first
   * row always comes, whatever its size. @default 8 MiB (8,388,608), from 1 to 2,147,483,647
   */
  readonly maxPageBytes?: number;
}

export interface DlqListPreviewOptions extends DlqListOptions {
  /**
   * How much of each body to show: its first bytes of UTF-8, never a split character (0: none, the
   * size only). @default 1,024 (peek()'s preview), at most 65,536
   */
  readonly bodyPreviewBytes?: number;
}

export interface DlqBatchOptions {
  /** Rows moved or deleted per statement (each its own short transaction). @default 1,000, at most 10,000 */
  readonly batchSize?: number;
  /**
   * Stops the call between batches: it rejects with the signal's reason, and every batch before
   * stays done (each committed on its own); running the call again finishes the rest.
   */
  readonly signal?: AbortSignal;
  /**
   * Called after each batch committed, with the rows it moved or deleted: progress for a long
   * call. When it returns a promise, the next batch waits for it (pacing: let a redrive's rows
   * drain first); any other return value is ignored. What it throws or rejects with stops the call
   * the way `signal` does (the batches done stay done).
   */
  readonly onBatch?: (rows: number) => unknown;
}

export interface DlqRedriveOptions extends DlqBatchOptions {
  /** The redriven rows become due this long from now. @default 0 (at once) */
  readonly delayMs?: number;
  /**
   * How long to keep retrying rows whose ordering key a transaction holds (one publishing under
   * that key): a redrive never waits on a key's lock, it moves the other rows and comes back for
   * these, then reports what it left as `keyBusy`. Counted from the end of the first pass over the
   * selection that left such rows, so the time a long redrive takes to walk its rows does not use
   * it up. 0: no retry. @default 10000
   */
  readonly keyWaitMs?: number;
}

export const DEFAULT_LIST_LIMIT = 50;
export const MAX_LIST_LIMIT = 1_000;
export const DEFAULT_BATCH_SIZE = 1_000;
export const MAX_BATCH_SIZE = 10_000;

/** The filter's SQL parameters $1–$6 (see dlq-sql.ts): queue, reason, before, after, ids, highest id. */
export type FilterParams = [string | null, string | null, string | null, string | null, string[] | null, string | null];

function dateParam(option: string, value: unknown): string | null {
  if (value === undefined) return null;
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
    throw new InvalidOptionError({
      option,
      value,
      expected: 'a valid Date',
      fix: `Pass a Date, such as new Date(Date.now() - 3_600_000).`,
    });
  }
  return value.toISOString();
}

function filterParams(filter: DlqFilter | DlqListOptions, prefix: string): FilterParams {
  const { queue, reason } = filter;
  if (queue !== undefined && (typeof queue !== 'string' || queue === '')) {
    throw new InvalidOptionError({
      option: `${prefix}queue`,
      value: queue,
      expected: 'a non-empty string',
      fix: 'Pass a queue name, or leave it out for every queue.',
    });
  }
  if (queue !== undefined) refuseUnstorable(`${prefix}queue`, queue);
  if (reason !== undefined && !REASONS.includes(reason)) {
    throw new InvalidOptionError({
      option: `${prefix}reason`,
      value: reason,
      expected: REASONS.map((r) => `'${r}'`).join(', '),
      fix: 'Pass one of these, or leave it out for every reason.',
    });
  }
  return [
    queue ?? null,
    reason ?? null,
    dateParam(`${prefix}failedBefore`, filter.failedBefore),
    dateParam(`${prefix}failedAfter`, filter.failedAfter),
    null,
    null,
  ];
}

/** A redrive or purge selection: the SQL filter, and olderThanMs, which needs the database's clock. */
export interface ResolvedFilter {
  readonly params: FilterParams;
  readonly olderThanMs: number | undefined;
  readonly throughId: bigint | undefined;
}

const FILTER_KEYS: readonly (keyof DlqFilter)[] = [
  'queue',
  'reason',
  'failedBefore',
  'failedAfter',
  'olderThanMs',
  'all',
  'throughId',
];
const LIST_KEYS: readonly (keyof DlqListPreviewOptions)[] = [
  'queue',
  'reason',
  'failedBefore',
  'failedAfter',
  'limit',
  'cursor',
  'maxPageBytes',
];
const BATCH_KEYS: readonly (keyof DlqRedriveOptions)[] = ['batchSize', 'signal', 'onBatch'];
/** Each DLQ call's option keys: an unknown one is refused, never ignored (below). */
export const DLQ_OPTION_KEYS = {
  list: LIST_KEYS,
  listPreviews: [...LIST_KEYS, 'bodyPreviewBytes'],
  getPreview: ['bodyPreviewBytes'],
  redrive: [...BATCH_KEYS, 'delayMs', 'keyWaitMs'],
  purge: BATCH_KEYS,
  enforceRetention: BATCH_KEYS,
} as const satisfies Record<string, readonly string[]>;

/**
 * A DLQ call's options object: refused when it is not an object or holds a key the call does not
 * know. An ignored key is a wider selection or a different call than the one asked for: `{ queue,
 * ids }` to purge read as every dead letter of the queue, a misspelled `failedafter` as no bound.
 */
export function checkDlqOptions(options: unknown, call: keyof typeof DLQ_OPTION_KEYS): void {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidOptionError({
      option: 'options',
      value: options,
      expected: `an object of dlq.${call}() options (${DLQ_OPTION_KEYS[call].join(', ')})`,
      fix: 'Pass an object, or leave the options out.',
    });
  }
  rejectUnknownOptions(options, `dlq.${call}()`, DLQ_OPTION_KEYS[call]);
}

/** A redrive or purge filter: refused when it selects everything without saying so. */
export function resolveFilter(filter: unknown, operation: 'redrive' | 'purge'): ResolvedFilter {
  if (filter === null || typeof filter !== 'object' || Array.isArray(filter)) {
    throw new InvalidOptionError({
      option: 'filter',
      value: filter,
      expected: 'an object such as { queue, reason, failedBefore, failedAfter } or { all: true }',
      fix: `Call ${operation}({ queue: 'orders' }), or ${operation}({ all: true }) for every dead letter.`,
    });
  }
  // Redrive by ids is its own form (an array), never a filter key: `{ queue, ids }` must not purge the queue.
  rejectUnknownOptions(filter, `dlq.${operation}() filter`, FILTER_KEYS, 'filter.');
  const f = filter as DlqFilter;
  // A number is milliseconds; a string says its unit. `olderThanMs: '14'` (meant as days) would
  // select every dead letter older than 14 ms.
  const olderThan: unknown = f.olderThanMs;
  if (typeof olderThan === 'string' && /^\s*\d+\s*$/.test(olderThan)) {
    throw new InvalidOptionError({
      option: 'filter.olderThanMs',
      value: olderThan,
      expected: 'a number of milliseconds, or a duration with its unit such as 14d',
      fix: `Write the unit ('${olderThan.trim()}d' for days, 'h', 'm', 's', 'ms'), or pass a number.`,
    });
  }
  if (f.all !== undefined && typeof f.all !== 'boolean') {
    throw new InvalidOptionError({
      option: 'filter.all',
      value: f.all,
      expected: 'a boolean',
      fix: 'Pass all: true to act on every row.',
    });
  }
  const params = filterParams(f, 'filter.');
  const olderThanMs = f.olderThanMs === undefined ? undefined : resolveOlderThanMs('filter.olderThanMs', f.olderThanMs);
  if (f.all !== true && olderThanMs === undefined && params.every((p) => p === null)) {
    throw new InvalidOptionError({
      option: 'filter',
      value: filter,
      expected: 'at least one of queue, reason, failedBefore, failedAfter, olderThanMs, or all: true',
      fix: `An empty filter selects every dead letter: pass ${operation}({ all: true }) if that is what you mean.`,
    });
  }
  return { params, olderThanMs, throughId: resolveThroughId(f.throughId) };
}

/** `throughId`: a DLQ id as lastId() returns it ('0' for an empty DLQ). */
function resolveThroughId(value: unknown): bigint | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !isBigintId(value, true)) {
    throw new InvalidOptionError({
      option: 'filter.throughId',
      value,
      expected: 'a DLQ row id as a string (0 for an empty DLQ)',
      fix: 'Pass what outbox.dlq.lastId() returned when the rows were shown.',
    });
  }
  return BigInt(value);
}

/** DLQ row ids: bigint ids as strings (or safe integers), as list() and get() return them. */
export function resolveIds(ids: readonly unknown[]): string[] {
  return ids.map((id, i) => {
    const text = typeof id === 'number' && Number.isSafeInteger(id) ? String(id) : id;
    if (typeof text !== 'string' || !isBigintId(text)) {
      throw new InvalidOptionError({
        option: `ids[${i}]`,
        value: id,
        expected: 'a DLQ row id (a positive integer, as a string)',
        fix: 'Pass the `id` of a row from outbox.dlq.list() or outbox.dlq.get().',
      });
    }
    return text;
  });
}

export function resolveId(id: unknown): string {
  return resolveIds([id])[0] as string;
}

export interface ResolvedList {
  readonly filter: FilterParams;
  readonly limit: number;
  readonly cursor: { readonly failedAt: string; readonly id: string } | undefined;
  readonly maxPageBytes: number;
}

export function resolveList(options: DlqListOptions): ResolvedList {
  return {
    filter: filterParams(options, ''),
    limit: integerOption('limit', options.limit, 1, MAX_LIST_LIMIT, DEFAULT_LIST_LIMIT),
    cursor: options.cursor === undefined ? undefined : decodeCursor(options.cursor),
    maxPageBytes: resolveMaxPageBytes(options.maxPageBytes),
  };
}

export function resolveBatchSize(options: DlqBatchOptions): number {
  return integerOption('batchSize', options.batchSize, 1, MAX_BATCH_SIZE, DEFAULT_BATCH_SIZE);
}

export interface BatchHooks {
  readonly signal: AbortSignal | undefined;
  readonly onBatch: ((rows: number) => unknown) | undefined;
}

export function resolveBatchHooks(options: DlqBatchOptions): BatchHooks {
  const { signal, onBatch } = options;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidOptionError({
      option: 'signal',
      value: signal,
      expected: 'an AbortSignal',
      fix: 'Pass controller.signal of an AbortController, or leave signal out.',
    });
  }
  if (onBatch !== undefined && typeof onBatch !== 'function') {
    throw new InvalidOptionError({
      option: 'onBatch',
      value: onBatch,
      expected: 'a function (rows: number) => void, or one that returns a promise',
      fix: 'Pass a callback, or leave onBatch out.',
    });
  }
  return { signal, onBatch };
}

export function resolveDelayMs(options: DlqRedriveOptions): number {
  return integerOption('delayMs', options.delayMs, 0, 2_147_483_647, 0);
}

export const DEFAULT_KEY_WAIT_MS = 10_000;

export function resolveKeyWaitMs(options: DlqRedriveOptions): number {
  return integerOption('keyWaitMs', options.keyWaitMs, 0, 3_600_000, DEFAULT_KEY_WAIT_MS);
}

/** Opaque to callers: the last row's (failed_at at microseconds, id), base64url JSON. */
export function encodeCursor(failedAt: string, id: string): string {
  return Buffer.from(JSON.stringify([failedAt, id])).toString('base64url');
}

function decodeCursor(cursor: unknown): { failedAt: string; id: string } {
  try {
    if (typeof cursor !== 'string') throw new Error('not a string');
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (
      Array.isArray(parsed) &&
      parsed.length === 2 &&
      typeof parsed[0] === 'string' &&
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$/.test(parsed[0]) &&
      typeof parsed[1] === 'string' &&
      isBigintId(parsed[1])
    ) {
      return { failedAt: parsed[0], id: parsed[1] };
    }
    throw new Error('not a cursor');
  } catch (error) {
    throw new InvalidOptionError({
      option: 'cursor',
      value: cursor,
      expected: 'the nextCursor of a previous list() page',
      fix: 'Pass nextCursor unchanged, or leave cursor out for the first page.',
      cause: error,
    });
  }
}
