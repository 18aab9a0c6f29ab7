import { errorMessage } from '../errors.js';
import { backoffMs } from '../util/backoff.js';
import type { Logger } from '../util/logger.js';
import type { Wakeup } from '../util/wakeup.js';
import type { ResolvedSubscribeOptions } from './subscription-options.js';

/** The longest pause after consecutive failed claims (or row-lock batches). */
export const MAX_ERROR_BACKOFF_MS = 30_000;

/** The pause after the `errors`-th failed claim in a row: from 250 ms, doubling, up to MAX_ERROR_BACKOFF_MS. */
export function errorPauseMs(errors: number): number {
  return backoffMs(errors, 250, MAX_ERROR_BACKOFF_MS);
}

/**
 * The pause after a failed claim: only stop() (`running()` turning false, with a notify) ends it
 * early. A NOTIFY or a freed slot does not: under publish traffic that would retry a failing
 * database at the commit rate (issue 13, item 8).
 */
export async function pauseUnlessStopped(wakeup: Wakeup, ms: number, running: () => boolean): Promise<void> {
  const until = performance.now() + ms;
  for (let left = ms; left > 0 && running(); left = until - performance.now()) await wakeup.sleep(left);
}

/** How long an idle claim loop sleeps after `idleFetches` empty claims in a row (NOTIFY cuts it short). */
export function idlePollDelayMs(
  idleFetches: number,
  { minPollIntervalMs, maxPollIntervalMs }: Pick<ResolvedSubscribeOptions, 'minPollIntervalMs' | 'maxPollIntervalMs'>,
): number {
  const delay = backoffMs(idleFetches, minPollIntervalMs, maxPollIntervalMs);
  return Math.min(maxPollIntervalMs, Math.max(minPollIntervalMs, delay));
}

/** What a claim loop's failure path needs of its subscription. */
export interface ClaimFailureReport {
  readonly logger: Logger;
  readonly onClaimError: (error: unknown) => void;
  readonly subscriber: string;
}

/**
 * The `attempt`-th failed claim (or row-lock batch) in a row: counted (onClaimError), logged with
 * the pause it takes, then that pause (errorPauseMs), which only stop() cuts short.
 */
export async function pauseAfterFailure(
  report: ClaimFailureReport,
  error: unknown,
  attempt: number,
  what: string,
  wakeup: Wakeup,
  running: () => boolean,
): Promise<void> {
  report.onClaimError(error);
  const pauseMs = errorPauseMs(attempt);
  report.logger.error(
    { subscriber: report.subscriber, err: errorMessage(error), attempt, pauseMs: Math.round(pauseMs) },
    `${what}; retrying after a pause`,
  );
  await pauseUnlessStopped(wakeup, pauseMs, running);
}

/**
 * A subscription's liveness (its `alive`): false once claims have failed for `stallAfterMs`, or a
 * claim has been in flight that long (statements are bounded, so it is stuck where no timeout reaches).
 */
export function notStalled(
  stallAfterMs: number,
  failingSince: number | undefined,
  loops: readonly { readonly claimingSince: number | undefined }[],
): boolean {
  const now = performance.now();
  const stalled = (since: number | undefined): boolean => since !== undefined && now - since >= stallAfterMs;
  return !stalled(failingSince) && !loops.some((loop) => stalled(loop.claimingSince));
}
