/**
 * What travels on the Outbox's NOTIFY channel. A payload is one of
 * - a queue name (a publish, a redrive, a resume): wake its subscribers;
 * - from pause(), the queue behind PAUSED_PREFIX: subscribers give back that queue's buffered rows;
 * - from a delayed publish, DUE_PREFIX, the milliseconds until the row is due, a separator, and the
 *   queue: subscribers wake then (architecture/subscriber.md, "Delayed messages and timers").
 * The prefixes start with a control character no sensible queue name has; a queue named so anyway
 * would only have its rows released or woken for, never lost. A consumer of a version before a
 * prefix reads its payload as the name of a queue it does not serve, and polls as it did.
 */
const PAUSED_PREFIX = '\u0001paused\u0001';
const DUE_PREFIX = '\u0001due\u0001';
const SEPARATOR = '\u0001';

export type ChannelSignal =
  | { readonly kind: 'wake'; readonly queue: string }
  | { readonly kind: 'paused'; readonly queue: string }
  | { readonly kind: 'due'; readonly queue: string; readonly inMs: number };

/** The payload pause() notifies. */
export function pausedPayload(queue: string): string {
  return `${PAUSED_PREFIX}${queue}`;
}

/** Announced delays are rounded up to this: a burst's announcements of one time share a payload. */
export const DUE_ROUNDING_MS = 10;

/**
 * The payload of a row of `queue` due in `inMs`, rounded up (never early) to DUE_ROUNDING_MS: the
 * delayed publishes of a burst then share a payload, which the notifier sends once (and PostgreSQL
 * delivers once per transaction), for a wake-up at most 10 ms late. A step that grew with the delay
 * would coalesce no more (a burst's rows differ in due time by their spacing, whatever the delay)
 * and make an hour's timer wake a minute late.
 */
export function duePayload(queue: string, inMs: number): string {
  return `${DUE_PREFIX}${Math.ceil(Math.max(0, inMs) / DUE_ROUNDING_MS) * DUE_ROUNDING_MS}${SEPARATOR}${queue}`;
}

/** What a statement answered about its rows' due time (producer/sql.ts dueColumns); a driver may answer the number as text. */
export interface DueAnswer {
  readonly due?: boolean | null;
  readonly due_in_ms?: number | string | null;
}

/**
 * The payload that tells consumers of `queue` about rows with this answer: the queue when they are
 * due, the announcement of when they will be otherwise; undefined for no row (a timer conflict,
 * nothing released).
 */
export function payloadFor(queue: string, answer: DueAnswer | undefined): string | undefined {
  if (answer?.due === true) return queue;
  if (answer?.due !== false || answer.due_in_ms == null) return undefined;
  const inMs = Number(answer.due_in_ms);
  return Number.isFinite(inMs) ? duePayload(queue, inMs) : undefined;
}

export function readSignal(payload: string): ChannelSignal {
  if (payload.startsWith(PAUSED_PREFIX)) return { kind: 'paused', queue: payload.slice(PAUSED_PREFIX.length) };
  if (payload.startsWith(DUE_PREFIX)) {
    const end = payload.indexOf(SEPARATOR, DUE_PREFIX.length);
    const digits = end === -1 ? '' : payload.slice(DUE_PREFIX.length, end);
    // A malformed one (no sender writes it) is read as a queue nobody serves.
    if (/^\d{1,15}$/.test(digits)) return { kind: 'due', queue: payload.slice(end + 1), inMs: Number(digits) };
  }
  return { kind: 'wake', queue: payload };
}
