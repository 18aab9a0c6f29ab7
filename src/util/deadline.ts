/**
 * How long stop() gives each of its connections (the LISTEN and NOTIFY connections, an owned pool)
 * to finish and close once the drain has ended; they close in parallel, so stop() resolves within
 * gracefulTimeoutMs + this.
 */
export const CLOSE_TIMEOUT_MS = 1_000;

/**
 * `work`'s value, or `onDeadline()`'s if `work` has not settled within `ms` (a throwing
 * `onDeadline` rejects, with a thrown non-Error wrapped in an Error). `work` rejecting first rejects. Either way the timer is cleared when the
 * race is decided: a timer left pending keeps the process alive for the rest of `ms` after `work`
 * won (the bench's W6 once held its exit for 20 s that way). `work` itself is not cancelled.
 */
export async function beforeDeadline<T, D>(work: Promise<T>, ms: number, onDeadline: () => D): Promise<T | D> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<D>((resolve, reject) => {
    timer = setTimeout(() => {
      try {
        resolve(onDeadline());
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
      }
    }, ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
