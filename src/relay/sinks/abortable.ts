/**
 * `work`, or a rejection with `signal.reason` as soon as the signal aborts, whichever comes first.
 * The work itself goes on (a client's publish cannot be unsent): its result is dropped, and a late
 * rejection is swallowed so it never becomes an unhandled rejection. Sinks honour SendContext.signal
 * with it, so a relay's stop() or a lost lease never waits on a broker.
 *
 * One abort listener per signal, whatever the number of sends waiting on it: the relay gives each
 * delivery a signal of its own, but a caller that shares one across 64 sends in flight would
 * otherwise add 64 listeners (Node warns past 10: MaxListenersExceededWarning, seen in the bench).
 */
export function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(abortReason(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const waiters = waitersOf(signal);
    waiters.add(reject);
    work
      .finally(() => {
        waiters.delete(reject);
      })
      .then(resolve, reject);
  });
}

const waiting = new WeakMap<AbortSignal, Set<(reason: Error) => void>>();

function waitersOf(signal: AbortSignal): Set<(reason: Error) => void> {
  let waiters = waiting.get(signal);
  if (waiters === undefined) {
    const created = new Set<(reason: Error) => void>();
    waiters = created;
    waiting.set(signal, created);
    signal.addEventListener(
      'abort',
      () => {
        const reason = abortReason(signal);
        for (const reject of created) reject(reason);
        created.clear();
      },
      { once: true },
    );
  }
  return waiters;
}

/** What the signal was aborted with, as an Error (AbortController.abort() without a reason gives a DOMException, an Error). */
function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error(`aborted: ${String(reason)}`);
}
