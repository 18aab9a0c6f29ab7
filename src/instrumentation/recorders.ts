import { InvalidOptionError } from '../errors.js';
import type { Logger } from '../util/logger.js';
import type { OutboxEvent, Recorder } from './events.js';
import { safeCall } from './safe-invoke.js';

/**
 * Hands an event to every recorder. `undefined` when there are none: call sites write
 * `emit?.({ … })`, which then builds no event object at all (events are per message on the drain
 * path).
 */
export type Emit = ((event: OutboxEvent) => void) | undefined;

/** Validates the `recorder` option (one function or an array) and returns a guarded emitter. */
export function resolveRecorders(value: unknown, logger: Logger): Emit {
  const list: unknown[] = value === undefined ? [] : Array.isArray(value) ? value : [value];
  list.forEach((recorder, index) => {
    if (typeof recorder !== 'function') {
      throw new InvalidOptionError({
        option: Array.isArray(value) ? `recorder[${index}]` : 'recorder',
        value: recorder,
        expected: 'a function (event) => void, or an array of them',
      });
    }
  });
  const recorders = list as Recorder[];
  if (recorders.length === 0) return undefined;
  const emit = emitTo(recorders, logger);
  const reads = readTypes(recorders);
  if (reads !== undefined) READS.set(emit, reads);
  return emit;
}

function emitTo(recorders: readonly Recorder[], logger: Logger): NonNullable<Emit> {
  const [only] = recorders;
  // One recorder (the usual case): no loop. Either way no closure per event (issue 18).
  if (recorders.length === 1 && only !== undefined)
    return (event) => {
      safeCall(logger, 'recorder', only, event);
    };
  return (event) => {
    for (const recorder of recorders) safeCall(logger, 'recorder', recorder, event);
  };
}

/** The event types some recorder reads; undefined when one of them reads every type (or says nothing). */
function readTypes(recorders: readonly Recorder[]): ReadonlySet<OutboxEvent['type']> | undefined {
  const reads = new Set<OutboxEvent['type']>();
  for (const recorder of recorders) {
    const { readingOnly } = recorder;
    if (!Array.isArray(readingOnly)) return undefined;
    for (const type of readingOnly as readonly OutboxEvent['type'][]) reads.add(type);
  }
  return reads;
}

/** What each emitter's recorders read, when they declared it (Recorder.readingOnly). */
const READS = new WeakMap<NonNullable<Emit>, ReadonlySet<OutboxEvent['type']>>();

/**
 * `emit` for events of `type`, or undefined when no recorder behind it reads them: take it once
 * (`#emitAcked = emitterOf(emit, 'acked')`) and write `#emitAcked?.({ … })` per message, which then
 * builds nothing for an event nobody reads.
 */
export function emitterOf(emit: Emit, type: OutboxEvent['type']): Emit {
  if (emit === undefined) return undefined;
  const reads = READS.get(emit);
  return reads === undefined || reads.has(type) ? emit : undefined;
}

/**
 * An emitter that hands events to `sink` (a buffer: row-lock batches report after their COMMIT)
 * instead of `emit`, and that emitterOf knows reads what `emit`'s recorders read. Undefined when
 * `emit` is (nobody reads anything).
 */
export function deferredEmit(emit: Emit, sink: (event: OutboxEvent) => void): Emit {
  if (emit === undefined) return undefined;
  const reads = READS.get(emit);
  if (reads !== undefined) READS.set(sink, reads);
  return sink;
}
