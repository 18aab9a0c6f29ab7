/**
 * `work`, or a rejection with `signal.reason` as soon as the signal aborts, whichever comes first.
 * The work itself goes on (a client's publish cannot be unsent): its result is dropped, and a late
 * rejection is swallowed so it never becomes an unhandled rejection. Sinks honour SendContext.signal
 * with it, so a relay's stop() or a lost lease never waits on a broker.
 */
export function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(abortReason(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      reject(abortReason(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work
      .finally(() => {
        signal.removeEventListener('abort', onAbort);
      })
      .then(resolve, reject);
  });
}

/** What the signal was aborted with, as an Error (AbortController.abort() without a reason gives a DOMException, an Error). */
function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error(`aborted: ${String(reason)}`);
}
