import type pg from 'pg';

import { validateHeaders } from '../envelope/build-headers.js';
import { CAUSATION_ID_HEADER, CORRELATION_ID_HEADER } from '../envelope/headers.js';
import type { PublishOptions } from '../producer/publish-options.js';
import { type CausedBy, type ClaimedRecord, correlationIdOf } from './message.js';

/**
 * Publishes a handler's follow-up: through the delivery's transaction (`client`, transactional
 * subscriptions) or, without one, on its own through the Outbox's pool (autocommit). Wired by the
 * Outbox to its own publish, so publish middlewares (the tracing middleware's `traceparent`, taken
 * from the handler's active context) and validation apply as to any publish.
 */
export type PublishFollowUp = (
  client: pg.PoolClient | undefined,
  queue: string,
  body: unknown,
  options: PublishOptions,
) => Promise<string | null>;

export function causedBy(record: ClaimedRecord): CausedBy {
  return { correlationId: correlationIdOf(record), headers: { [CAUSATION_ID_HEADER]: record.id } };
}

/**
 * The caller's options plus the cause: `causation-id` unless the caller set one, and the consumed
 * message's correlation id unless the caller gave one (as `correlationId` or as the header: both
 * at once, differing, is the caller's InvalidOptionError, as for any publish).
 */
export function withCause(options: PublishOptions | undefined, record: ClaimedRecord): PublishOptions {
  // Checked before the spread, as publish checks them: `null` was spread to nothing and an array
  // to {"0": …}, stored, where outbox.publish refuses both.
  const given = options?.headers === undefined ? undefined : validateHeaders('headers', options.headers);
  const headers = { [CAUSATION_ID_HEADER]: record.id, ...given };
  // Read from the checked copy, whose envelope names are lower case (`Correlation-Id` given is that header).
  const correlationGiven = options?.correlationId !== undefined || given?.[CORRELATION_ID_HEADER] !== undefined;
  return { ...options, headers, ...(correlationGiven ? {} : { correlationId: correlationIdOf(record) }) };
}
