import { backoffMs } from '../util/backoff.js';
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
