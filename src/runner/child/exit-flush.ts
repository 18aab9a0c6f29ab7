/**
 * The last things a draining child sends before it exits: its final metrics report, its statsd
 * lines and its spans. They run side by side and are bounded together by EXIT_FLUSH_BUDGET_MS:
 * one after the other, a slow statsd name lookup (up to 1 s) and a collector that never answers
 * (3 s) took the child past the supervisor's SIGKILL at gracefulTimeoutMs + KILL_MARGIN_MS, which
 * then reported a drain that had finished as a kill. What is not out by then is abandoned: spans
 * and counts, never rows (the Outbox has stopped before this runs).
 */
import { beforeDeadline } from '../../util/deadline.js';
import { EXIT_FLUSH_BUDGET_MS } from '../protocol.js';

/** One flush; undefined when the child has none of that kind (no statsd, no tracing). */
export type ExitFlush = (() => Promise<unknown>) | undefined;

/**
 * Starts every flush at once and resolves when all settled or `budgetMs` passed, whichever is
 * first. Never rejects: a flush that throws or rejects is abandoned as one that is late.
 */
export async function flushBeforeExit(flushes: readonly ExitFlush[], budgetMs = EXIT_FLUSH_BUDGET_MS): Promise<void> {
  const started = flushes.map(async (flush) => {
    try {
      await flush?.();
    } catch {
      // Abandoned: the child exits all the same; each flush logs its own failure.
    }
  });
  await beforeDeadline(Promise.all(started), budgetMs, () => undefined);
}
