import { performance } from 'node:perf_hooks';

/**
 * Steps per silence period. A stall of this process's own loop counts as at most one step of
 * silence: with 30 s, 3 s. A healthy child reports at least every ~10 s (HEALTH_INTERVAL_MS after a
 * ping bounded by 5 s), so even a stall that froze it too (a VM pause) stays well short of 30 s.
 */
const STEPS_PER_SILENCE = 10;

/**
 * Calls `onSilent` when no report was `heard()` for `silenceMs` of time THIS process observed.
 *
 * A single timer of `silenceMs` judged wall time the supervisor may not have seen: after its own
 * event loop was blocked for longer (a long GC, SIGSTOP, a VM pause) the timer fired as soon as the
 * loop resumed, before the loop read the reports its children had queued in their pipes meanwhile,
 * so every healthy process turned not ready once (/readyz flapped to 503;
 * test/unit/runner-slot-silence.test.ts). So time is counted in steps on a monotonic clock
 * (performance.now(), not Date.now(): a wall-clock jump is not silence), each step at most its own
 * length: a step that came late is time the loop was not running, in which no report could be read.
 * A frozen child is still caught: a stall lends it at most one step. The cost is that an ordinary
 * busy loop's timer lag (a few ms a step) delays the judgement by as much.
 *
 * The judgement waits for a setImmediate: the loop's check phase comes after the poll phase that
 * reads the pipes (and child_process emits each message read there on a nextTick, before check), so
 * a report already waiting in the pipe when the last step fires is heard first.
 *
 * States:
 *   idle      no report heard yet, or stop(), or judged silent     heard() → watching
 *   watching  a step timer armed, observed < silenceMs             heard() → watching (from 0);
 *                                                                  step → watching, or → judging
 *   judging   a setImmediate armed, observed >= silenceMs          heard() → watching (from 0);
 *                                                                  immediate → idle, onSilent()
 */
export class SilenceWatch {
  readonly #silenceMs: number;
  readonly #stepMs: number;
  readonly #onSilent: () => void;
  /** Silence observed since the last report: the sum of the steps, each capped at #stepMs. */
  #observedMs = 0;
  #lastStepAt = 0;
  #step: NodeJS.Timeout | undefined;
  #judgement: NodeJS.Immediate | undefined;

  constructor(silenceMs: number, onSilent: () => void) {
    this.#silenceMs = silenceMs;
    this.#stepMs = silenceMs / STEPS_PER_SILENCE;
    this.#onSilent = onSilent;
  }

  /** A report arrived: the silence starts again from zero. */
  heard(): void {
    this.stop();
    this.#observedMs = 0;
    this.#lastStepAt = performance.now();
    this.#armStep();
  }

  /** Stops watching until the next heard(). */
  stop(): void {
    clearTimeout(this.#step);
    clearImmediate(this.#judgement);
    this.#step = undefined;
    this.#judgement = undefined;
  }

  #armStep(): void {
    this.#step = setTimeout(() => {
      this.#onStep();
    }, this.#stepMs);
  }

  #onStep(): void {
    const now = performance.now();
    this.#observedMs += Math.min(now - this.#lastStepAt, this.#stepMs);
    this.#lastStepAt = now;
    if (this.#observedMs < this.#silenceMs) {
      this.#armStep();
      return;
    }
    this.#step = undefined;
    this.#judgement = setImmediate(() => {
      this.#judgement = undefined;
      this.#onSilent();
    });
  }
}
