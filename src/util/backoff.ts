/** `base × 2^(n−1)`, capped, randomised by ±25 % so a fleet does not retry in lockstep. */
export function backoffMs(n: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const exponential = Math.min(capMs, baseMs * 2 ** Math.max(0, Math.min(n - 1, 30)));
  return Math.min(capMs, exponential * (0.75 + random() * 0.5));
}

/** Resolves after `ms`; used where a plain delay is the intent (tests use waitFor instead). */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
