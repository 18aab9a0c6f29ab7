import { validateHeaders } from '../envelope/build-headers.js';
import type { Headers } from '../envelope/headers.js';
import { unstorableIn } from '../envelope/storable-text.js';
import { InvalidOptionError } from '../errors.js';
import { rejectUnknownOptions } from '../util/known-options.js';

export interface PublishOptions {
  /** Extra headers, a flat map of strings. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Correlation id for the message; a UUID is generated when absent. */
  readonly correlationId?: string;
  /** Deliver no earlier than this many milliseconds after the insert, by the database clock. */
  readonly activateInMs?: number;
  /** Deliver no earlier than this instant. Mutually exclusive with `activateInMs`. */
  readonly activateAt?: Date;
  /**
   * At most one live row per (queue, timerId): a publish whose timerId is taken returns null.
   * Single publish only.
   */
  readonly timerId?: string;
  /**
   * Per-key ordering within the queue: rows with the same key are handed out one at a time, in
   * publish order — the next only once the previous was acked or ended (a retried row keeps its
   * place) — while other keys and unkeyed rows flow at full concurrency. Publishes under one key
   * are serialized until their transactions end (architecture/ordering.md). In publishBatch(),
   * every row of the batch gets the key, in the batch's order.
   */
  readonly orderingKey?: string;
  /**
   * Publish through a pool, or a client outside BEGIN, on purpose: the row then commits on its own.
   * @default false
   */
  readonly autocommit?: boolean;
}

export type PublishBatchOptions = Omit<PublishOptions, 'timerId'>;

export interface ResolvedPublishOptions {
  readonly headers: Headers;
  readonly correlationId: string | undefined;
  /** Exactly one of these two is set, or neither. */
  readonly activateInMs: number | undefined;
  readonly activateAt: Date | undefined;
  readonly timerId: string | undefined;
  readonly orderingKey: string | undefined;
  readonly autocommit: boolean;
}

export const MAX_QUEUE_LENGTH = 255;
const MIN_ACTIVATE_AT = new Date('0001-01-01T00:00:00.000Z');
const MAX_ACTIVATE_AT = new Date('9999-12-31T23:59:59.999Z');

const KNOWN = ['headers', 'correlationId', 'activateInMs', 'activateAt', 'timerId', 'orderingKey', 'autocommit'];

/** The longest ordering key: keys are ids (an order, an account), and each is indexed with its queue. */
export const MAX_ORDERING_KEY_LENGTH = 255;

export function validateQueue(queue: unknown): string {
  if (typeof queue !== 'string' || queue.length === 0 || queue.length > MAX_QUEUE_LENGTH) {
    throw new InvalidOptionError({
      option: 'queue',
      value: queue,
      expected: `a non-empty string of at most ${MAX_QUEUE_LENGTH} characters`,
    });
  }
  refuseUnstorable('queue', queue);
  return queue;
}

/** A string option PostgreSQL could not store as given (storable-text.ts): refused here, before any statement. */
export function refuseUnstorable(option: string, value: string): void {
  const why = unstorableIn(value);
  if (why !== undefined)
    throw new InvalidOptionError({ option, value, expected: `text without ${why}`, fix: 'Remove or replace that character.' });
}

/** activateInMs at most 100 years: PostgreSQL refuses a larger interval (over ~9.2e15 ms) inside the caller's transaction. */
export const MAX_ACTIVATE_IN_MS = 100 * 365.25 * 24 * 3_600_000;

/** Validates publish options once per call; `batch` refuses what only a single publish supports. */
export function resolvePublishOptions(options: unknown, batch: boolean): ResolvedPublishOptions {
  if (options !== undefined && (typeof options !== 'object' || options === null || Array.isArray(options))) {
    throw new InvalidOptionError({ option: 'options', value: options, expected: 'an object of publish options' });
  }
  const raw = (options ?? {}) as PublishOptions;
  rejectUnknownOptions(raw, 'publish', KNOWN);
  const { activateInMs, activateAt, timerId, correlationId } = raw;
  if (activateInMs !== undefined && activateAt !== undefined) {
    throw new InvalidOptionError({
      option: 'activateInMs',
      value: activateInMs,
      expected: 'activateInMs or activateAt, not both',
      fix: 'Pass one of them.',
    });
  }
  if (
    activateInMs !== undefined &&
    (typeof activateInMs !== 'number' || !Number.isFinite(activateInMs) || activateInMs < 0 || activateInMs > MAX_ACTIVATE_IN_MS)
  ) {
    throw new InvalidOptionError({
      option: 'activateInMs',
      value: activateInMs,
      expected: `a number of milliseconds from 0 to ${MAX_ACTIVATE_IN_MS} (100 years)`,
      fix: 'For a fixed instant pass activateAt (a Date) instead.',
    });
  }
  if (activateAt !== undefined && (!(activateAt instanceof Date) || Number.isNaN(activateAt.getTime()))) {
    throw new InvalidOptionError({ option: 'activateAt', value: activateAt, expected: 'a valid Date' });
  }
  // It travels as ISO text; outside years 1..9999 that is `+010000-…` or `-000001-…`, which
  // PostgreSQL refuses inside the caller's transaction (aborting it) instead of here.
  if (activateAt !== undefined && (activateAt < MIN_ACTIVATE_AT || activateAt > MAX_ACTIVATE_AT)) {
    throw new InvalidOptionError({
      option: 'activateAt',
      value: activateAt.toISOString(),
      expected: 'a Date between the years 1 and 9999',
    });
  }
  if (timerId !== undefined) {
    if (batch) {
      throw new InvalidOptionError({
        option: 'timerId',
        value: timerId,
        expected: 'no timerId in publishBatch()',
        fix: 'A timer id names one row; publish timers one at a time with outbox.publish().',
      });
    }
    if (typeof timerId !== 'string' || timerId.length === 0 || timerId.length > MAX_QUEUE_LENGTH) {
      throw new InvalidOptionError({
        option: 'timerId',
        value: timerId,
        expected: `a non-empty string of at most ${MAX_QUEUE_LENGTH} characters`,
      });
    }
    refuseUnstorable('timerId', timerId);
  }
  const { orderingKey } = raw;
  if (
    orderingKey !== undefined &&
    (typeof orderingKey !== 'string' || orderingKey.length === 0 || orderingKey.length > MAX_ORDERING_KEY_LENGTH)
  ) {
    throw new InvalidOptionError({
      option: 'orderingKey',
      value: orderingKey,
      expected: `a non-empty string of at most ${MAX_ORDERING_KEY_LENGTH} characters`,
      fix: 'Use a bounded id (an order id, an account id) as the key; omit it for rows that need no order.',
    });
  }
  if (orderingKey !== undefined) refuseUnstorable('orderingKey', orderingKey);
  if (correlationId !== undefined && (typeof correlationId !== 'string' || correlationId.length === 0)) {
    throw new InvalidOptionError({ option: 'correlationId', value: correlationId, expected: 'a non-empty string' });
  }
  if (correlationId !== undefined) refuseUnstorable('correlationId', correlationId);
  if (raw.autocommit !== undefined && typeof raw.autocommit !== 'boolean') {
    throw new InvalidOptionError({ option: 'autocommit', value: raw.autocommit, expected: 'a boolean' });
  }
  return {
    headers: validateHeaders('headers', raw.headers),
    correlationId,
    activateInMs,
    // A copy: the caller's Date, changed while the call is under way, must not move the row.
    activateAt: activateAt === undefined ? undefined : new Date(activateAt.getTime()),
    timerId,
    orderingKey,
    autocommit: raw.autocommit ?? false,
  };
}

export interface CancelTimerOptions {
  /**
   * Cancel outside any transaction, on purpose (a pool, a client outside BEGIN). Without it those are
   * refused, as for publish: the delete would commit on its own, and a rollback of the caller's
   * transaction would not bring the timer back.
   * @default false
   */
  readonly autocommit?: boolean;
}

/** cancelTimer()'s options: whether it may run outside a transaction. */
export function resolveCancelTimerOptions(options: unknown): { readonly autocommit: boolean } {
  if (options === undefined) return { autocommit: false };
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidOptionError({
      option: 'options',
      value: options,
      expected: 'an object of cancelTimer options ({ autocommit })',
    });
  }
  rejectUnknownOptions(options, 'cancelTimer', ['autocommit']);
  const { autocommit } = options as CancelTimerOptions;
  if (autocommit !== undefined && typeof autocommit !== 'boolean') {
    throw new InvalidOptionError({ option: 'autocommit', value: autocommit, expected: 'a boolean' });
  }
  return { autocommit: autocommit ?? false };
}
