import { InvalidOptionError } from '../errors.js';
import {
  type OutboxRow,
  type OutboxRowFields,
  outboxRowFieldsOf,
  type OutboxRowFieldsRecord,
  type OutboxRowRecord,
  toOutboxRow,
} from '../producer/outbox-row.js';
import { refuseUnstorable } from '../producer/publish-options.js';
import { DEFAULT_LEASE_TTL_MS } from '../subscriber/subscription-options.js';
import { isBigintId } from '../util/bigint-id.js';
import { integerOption } from '../util/integer-option.js';
import type { Statement } from '../util/statement.js';
import type { StatementRunner } from '../util/statement-runner.js';
import { BODY_PREVIEW_BYTES, resolveBodyPreviewBytes, resolveMaxPageBytes } from './peek-page-bytes.js';
import type { PeekSql } from './peek-sql.js';

/**
 * Where a pending row stands. `ready`: a claim would take it now (unleased and due, or its lease
 * expired); `scheduled`: unleased, due later (activateInMs/activateAt, a retry's delay); `leased`:
 * a subscriber holds an unexpired lease on it (its handler is running or buffered).
 */
export type PeekState = 'ready' | 'scheduled' | 'leased';
const STATES: readonly PeekState[] = ['ready', 'scheduled', 'leased'];

export interface PeekOptions {
  /** Only rows in this state. @default every state: ready, then scheduled, then leased */
  readonly state?: PeekState;
  /** Rows per page. @default 50, at most 1,000 */
  readonly limit?: number;
  /** `nextCursor` of the previous page (opaque). */
  readonly cursor?: string;
  /**
   * The lease TTL that tells a held lease from an expired one: a lease is a row's, the TTL is its
   * subscriber's, so pass your subscribers' `leaseTtlMs` when it is not the default.
   * @default 60,000 (the subscriber default)
   */
  readonly leaseTtlMs?: number;
  /**
   * How much of each body `bodyPreview` shows: its first bytes of UTF-8, never a split character
   * (peekPreviews() reads only those from the database). @default 1,024, from 0 to 65,536
   */
  readonly bodyPreviewBytes?: number;
  /**
   * The page's byte budget: rows stop before the one whose stored bytes (payload, or a preview's
   * head; headers) would pass it, across states, and the page says `limitedByBytes`. Its first row
   * always comes, whatever its size. @default 8 MiB (8,388,608), from 1 to 2,147,483,647
   */
  readonly maxPageBytes?: number;
}

/** A pending row as peekPreviews() shows it: its fields, state, body preview and size, never the body. */
export interface PeekedPreview extends OutboxRowFields {
  readonly state: PeekState;
  /**
   * The first `bodyPreviewBytes` (1 KiB by default; UTF-8 bytes, never a split character) of the
   * stored payload as text: a string body or a JSON body's text as published, bytes read as UTF-8.
   */
  readonly bodyPreview: string;
  /** True when the payload is longer than bodyPreview. */
  readonly bodyPreviewTruncated: boolean;
  /** The stored payload's size in bytes. */
  readonly payloadBytes: number;
  /**
   * The payload's first `bodyPreviewBytes` bytes as stored, or all of it when it is no longer
   * (`payloadHead.length === payloadBytes`): the bytes a bounded dump prints (`queue peek --json`).
   */
  readonly payloadHead: Buffer;
}

export interface PeekPreviewPage {
  readonly rows: PeekedPreview[];
  /** Pass as `cursor` for the next page (of peek() or peekPreviews()); null on the last one. */
  readonly nextCursor: string | null;
  /** As peek()'s: the page stopped at `maxPageBytes` (each row counted with its head, not its payload). */
  readonly limitedByBytes: boolean;
}

/** A pending row as peek() shows it: the full row (no lease taken) plus its state and a preview. */
export interface PeekedRow extends OutboxRow {
  readonly state: PeekState;
  /**
   * The first `bodyPreviewBytes` (1 KiB by default; UTF-8 bytes, never a split character) of the
   * decoded body as text: a string as is, a JSON value as JSON text, bytes read as UTF-8.
   */
  readonly bodyPreview: string;
  /** True when the body's text is longer than bodyPreview. */
  readonly bodyPreviewTruncated: boolean;
}

export interface PeekPage {
  readonly rows: PeekedRow[];
  /** Pass as `cursor` for the next page; null on the last one. */
  readonly nextCursor: string | null;
  /**
   * True when the page stopped before `limit` rows because the next row would have passed
   * `maxPageBytes`: nextCursor is set, and the next page starts at that row.
   */
  readonly limitedByBytes: boolean;
}

export const DEFAULT_PEEK_LIMIT = 50;
export const MAX_PEEK_LIMIT = 1_000;

interface Cursor {
  readonly state: PeekState;
  readonly at: string;
  readonly id: string;
}

interface ResolvedPeek {
  readonly queue: string;
  readonly states: readonly PeekState[];
  readonly limit: number;
  readonly cursor: Cursor | undefined;
  readonly leaseTtlMs: number;
  readonly bodyPreviewBytes: number;
  readonly maxPageBytes: number;
}

const KNOWN = ['state', 'limit', 'cursor', 'leaseTtlMs', 'bodyPreviewBytes', 'maxPageBytes'];

export function resolvePeek(queue: unknown, options: unknown): ResolvedPeek {
  if (typeof queue !== 'string' || queue === '') {
    throw new InvalidOptionError({
      option: 'queue',
      value: queue,
      expected: 'a non-empty string',
      fix: "Pass the queue's name, such as peek('orders').",
    });
  }
  refuseUnstorable('queue', queue);
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidOptionError({
      option: 'options',
      value: options,
      expected: 'an object such as { state, limit, cursor }',
      fix: "Pass peek('orders', { state: 'ready' }), or leave the options out.",
    });
  }
  const o = options as PeekOptions;
  for (const key of Object.keys(o)) {
    if (!KNOWN.includes(key)) {
      throw new InvalidOptionError({
        option: key,
        value: (o as Record<string, unknown>)[key],
        expected: `one of the options ${KNOWN.join(', ')}`,
        fix: `Remove ${key}; peek() takes ${KNOWN.join(', ')}.`,
      });
    }
  }
  if (o.state !== undefined && !STATES.includes(o.state)) {
    throw new InvalidOptionError({
      option: 'state',
      value: o.state,
      expected: STATES.map((s) => `'${s}'`).join(', '),
      fix: 'Pass one of these, or leave state out for every pending row.',
    });
  }
  const states = o.state === undefined ? STATES : [o.state];
  const cursor = o.cursor === undefined ? undefined : decodeCursor(o.cursor, states);
  return {
    queue,
    // A cursor of the all-states walk resumes at its state: the states before it are done.
    states: cursor === undefined ? states : states.slice(states.indexOf(cursor.state)),
    limit: integerOption('limit', o.limit, 1, MAX_PEEK_LIMIT, DEFAULT_PEEK_LIMIT),
    cursor,
    leaseTtlMs: integerOption('leaseTtlMs', o.leaseTtlMs, 1, 24 * 3600 * 1000, DEFAULT_LEASE_TTL_MS),
    bodyPreviewBytes: resolveBodyPreviewBytes(o.bodyPreviewBytes),
    maxPageBytes: resolveMaxPageBytes(o.maxPageBytes),
  };
}

/** Opaque to callers: the last row's (state, ordering timestamp at microseconds, id), base64url JSON. */
function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.state, cursor.at, cursor.id])).toString('base64url');
}

function decodeCursor(cursor: unknown, states: readonly PeekState[]): Cursor {
  try {
    if (typeof cursor !== 'string') throw new Error('not a string');
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (
      Array.isArray(parsed) &&
      parsed.length === 3 &&
      states.includes(parsed[0] as PeekState) &&
      typeof parsed[1] === 'string' &&
      isCursorTimestamp(parsed[1]) &&
      typeof parsed[2] === 'string' &&
      isBigintId(parsed[2])
    ) {
      return { state: parsed[0] as PeekState, at: parsed[1], id: parsed[2] };
    }
    throw new Error('not a cursor of this state filter');
  } catch (error) {
    throw new InvalidOptionError({
      option: 'cursor',
      value: cursor,
      expected: 'the nextCursor of a previous peek() page with the same state option',
      fix: 'Pass nextCursor unchanged with the same state, or leave cursor out for the first page.',
      cause: error,
    });
  }
}

const CURSOR_TIMESTAMP = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.\d{6}$/;

/**
 * A cursor's timestamp as the statements write it (`to_char` at microseconds, UTC) and a real
 * date: its shape alone let `2024-13-45T99:99:99` or year 0000 through to PostgreSQL's
 * `::timestamp`, a raw 22008 error instead of the InvalidOptionError on `cursor`. Years 1 to 9999
 * (publish's activateAt range), proleptic Gregorian as PostgreSQL's; no leap second or 24:00, which
 * to_char never writes.
 */
function isCursorTimestamp(text: string): boolean {
  const match = CURSOR_TIMESTAMP.exec(text);
  if (match === null) return false;
  const [year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0] = match.slice(1, 7).map(Number);
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days = month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;
  return year >= 1 && month >= 1 && month <= 12 && day >= 1 && day <= days && hour <= 23 && minute <= 59 && second <= 59;
}

/**
 * The first `maxBytes` UTF-8 bytes of a body as text, cut at a character boundary: never half a
 * character. Shared with the DLQ's listPreviews(), which passes the payload's first bytes.
 */
export function bodyPreviewOf(
  body: unknown,
  maxBytes = BODY_PREVIEW_BYTES,
): { bodyPreview: string; bodyPreviewTruncated: boolean } {
  // JSON.stringify(undefined) is undefined, whatever its declared type says.
  const json = (value: unknown): string | undefined => JSON.stringify(value);
  // Bytes are measured as stored, not as their UTF-8 reading: each byte that is not UTF-8 reads as
  // U+FFFD (3 bytes), and a 10 KB protobuf was reported cut at 16 KiB, shown in part.
  const text = Buffer.isBuffer(body) ? undefined : typeof body === 'string' ? body : (json(body) ?? '');
  const bytes = text === undefined ? (body as Buffer) : Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return { bodyPreview: text ?? bytes.toString('utf8'), bodyPreviewTruncated: false };
  let end = maxBytes;
  // Back up over continuation bytes (10xxxxxx) to the start of the character that does not fit.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end -= 1;
  return { bodyPreview: bytes.subarray(0, end).toString('utf8'), bodyPreviewTruncated: true };
}

/** What every statement's rows carry besides the row: where it stands and what it cost the page. */
interface PageColumns {
  cursor_at: string;
  row_bytes: number;
  candidate_count: number;
}
type PeekRecord = OutboxRowRecord & PageColumns;
type PeekPreviewRecord = OutboxRowFieldsRecord &
  PageColumns & {
    /** The payload's first bodyPreviewBytes + 1 bytes, base64: the one past the preview tells a cut character. */
    payload_head: string;
    /** octet_length(payload): read from the value's header, the body itself is not fetched. */
    payload_bytes: number | string;
  };

export interface PeekContext {
  readonly db: StatementRunner;
  readonly sql: PeekSql;
}

/** The state's parameters up to its limit, then the budget's: bytes left, and whether the page has no row yet. */
function paramsFor(state: PeekState, r: ResolvedPeek, limit: number, bytesLeft: number, firstRow: boolean): unknown[] {
  const position = r.cursor?.state === state ? [r.cursor.at, r.cursor.id] : [null, null];
  const head = state === 'scheduled' ? [r.queue, ...position, limit] : [r.queue, r.leaseTtlMs, ...position, limit];
  return [...head, bytesLeft, firstRow];
}

/**
 * Read-only, on the Outbox's own pool: one plain SELECT per state walked (the next state only when
 * the page is neither full nor out of bytes). Rows may change state between pages (a claim, an
 * ack): a peek is an inspection, not a snapshot.
 */
export async function peek(context: PeekContext, queue: string, options: PeekOptions = {}): Promise<PeekPage> {
  const resolved = resolvePeek(queue, options);
  return await walk(context.db, context.sql, resolved, [], (record: PeekRecord, state): PeekedRow => {
    const row = toOutboxRow(record);
    return { ...row, state, ...bodyPreviewOf(row.body, resolved.bodyPreviewBytes) };
  });
}

/**
 * peek() without the bodies: the same rows, order and cursors, each with the first
 * `bodyPreviewBytes` of its payload (1 KiB by default, up to 64 KiB) and its size: what a page that
 * shows rows needs (the dashboard, `txoutbox queue peek`).
 */
export async function peekPreviews(context: PeekContext, queue: string, options: PeekOptions = {}): Promise<PeekPreviewPage> {
  const resolved = resolvePeek(queue, options);
  const bytes = resolved.bodyPreviewBytes;
  return await walk(context.db, context.sql.previews, resolved, [bytes], (record: PeekPreviewRecord, state): PeekedPreview => {
    const head = Buffer.from(record.payload_head, 'base64');
    return {
      ...outboxRowFieldsOf(record),
      state,
      // One byte past the preview: a character the substring split is seen and left out, never half shown.
      ...bodyPreviewOf(head, bytes),
      payloadBytes: Number(record.payload_bytes),
      payloadHead: head.subarray(0, bytes),
    };
  });
}

/**
 * One plain SELECT per state walked, sharing the page's limit and byte budget: the next state only
 * when the page is neither full nor cut by the budget. A state whose statement let fewer rows
 * through than it had under the limit was cut: the page ends there, and its cursor (the last row
 * sent, possibly of an earlier state) resumes the walk at the first row left out.
 */
async function walk<T>(
  db: StatementRunner,
  statements: Readonly<Record<PeekState, Statement>>,
  resolved: ResolvedPeek,
  extra: readonly unknown[],
  decode: (record: never, state: PeekState) => T,
): Promise<{ rows: T[]; nextCursor: string | null; limitedByBytes: boolean }> {
  const rows: T[] = [];
  let last: Cursor | undefined;
  let bytesLeft = resolved.maxPageBytes;
  let limitedByBytes = false;
  for (const state of resolved.states) {
    const want = resolved.limit - rows.length;
    if (want === 0 || limitedByBytes) break;
    const { rows: records } = await db.run<{ id: string | null; cursor_at: string; row_bytes: number; candidate_count: number }>(
      statements[state],
      [...paramsFor(state, resolved, want, Math.max(bytesLeft, 0), rows.length === 0), ...extra],
    );
    let sent = 0;
    for (const record of records) {
      // The row of NULLs that carries candidate_count when no row fit the bytes left.
      if (record.id === null) continue;
      // The statement's record: decode's parameter type (PeekRecord or PeekPreviewRecord).
      rows.push(decode(record as never, state));
      last = { state, at: record.cursor_at, id: record.id };
      bytesLeft -= record.row_bytes;
      sent += 1;
    }
    limitedByBytes = sent < (records[0]?.candidate_count ?? 0);
  }
  // A full page may be the last one: the next call then returns no row and a null cursor.
  const more = rows.length === resolved.limit || limitedByBytes;
  return { rows, nextCursor: more && last !== undefined ? encodeCursor(last) : null, limitedByBytes };
}
