/**
 * Time bounds. A fault harness waits on things that may never happen (a stop() that hangs, a
 * process that never exits): every wait has a bound, and running out of it is a result to report,
 * not an exception that unwinds the scenario.
 */

export class BoundExceeded extends Error {
  readonly ms: number;

  constructor(ms: number) {
    super(`still pending after ${String(ms)} ms`);
    this.ms = ms;
  }
}

/** `work`'s result, or undefined when it is still pending after `ms` (the timer is always cleared). */
export async function within<T>(work: Promise<T>, ms: number): Promise<{ value: T } | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => {
      resolve(undefined);
    }, ms);
  });
  try {
    return await Promise.race([work.then((value) => ({ value })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** `work`'s result, or BoundExceeded after `ms`. */
export async function bounded<T>(work: Promise<T>, ms: number): Promise<T> {
  const result = await within(work, ms);
  if (result === undefined) throw new BoundExceeded(ms);
  return result.value;
}

/** A deliberate pause between fault-injection steps (the harness paces the scenario; tests never sleep). */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) {
      resolve();
      return;
    }
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Polls `predicate` every `intervalMs` until it holds (true) or `ms` passed (false); a throw counts
 * as not yet. Gives up (false) as soon as `signal` aborts.
 */
export async function until(
  predicate: () => boolean | Promise<boolean>,
  ms: number,
  intervalMs = 100,
  signal?: AbortSignal,
): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (signal?.aborted === true) return false;
    if (
      await Promise.resolve()
        .then(predicate)
        .catch(() => false)
    )
      return true;
    if (Date.now() > deadline) return false;
    await pause(intervalMs, signal);
  }
}
