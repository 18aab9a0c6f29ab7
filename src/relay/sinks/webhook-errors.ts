import { SinkRefusedError, SinkUnavailableError } from '../../errors.js';

/** The receiver answered with a status `terminalStatuses` names: the row goes to the DLQ with it. */
export class WebhookRefusedError extends SinkRefusedError {
  readonly status: number;

  constructor(status: number, reason: string) {
    super('webhook', reason);
    this.status = status;
  }
}

/**
 * The request failed in a way worth retrying: a retryable status (`status`), a timeout, a network
 * error, an abort. `retryAfterMs` is the receiver's Retry-After, if it sent one: a relay's retry
 * waits at least that long (up to an hour; relay/retry-after.ts), whatever its strategy says.
 */
export class WebhookUnavailableError extends SinkUnavailableError {
  readonly status: number | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(reason: string, details: { status?: number; retryAfterMs?: number; cause?: unknown } = {}) {
    super('webhook', reason, { cause: details.cause });
    this.status = details.status;
    this.retryAfterMs = details.retryAfterMs;
  }
}
