/** Polls `predicate` until it holds: tests wait for a state, never for a fixed time. */
export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  options: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 10;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline)
      throw new Error(`waitFor timed out after ${timeoutMs} ms${options.what === undefined ? '' : `: ${options.what}`}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
