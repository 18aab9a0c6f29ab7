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
