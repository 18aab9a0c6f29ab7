import { errorMessage } from '../errors.js';
import type { Logger } from '../util/logger.js';

/**
 * Every user callback on the delivery path (recorder, later middleware hooks and custom stats)
 * runs through here: a throwing callback is logged at debug level and delivery goes on
 * (DESIGN invariant 5). `what` names the callback in the log.
 */
export function safeInvoke(logger: Logger, what: string, fn: () => void): void {
  try {
    fn();
  } catch (error) {
    ignored(logger, what, error);
  }
}

/** safeInvoke for a callback of one argument, without a closure per call (recorders run per message). */
export function safeCall<A>(logger: Logger, what: string, fn: (arg: A) => void, arg: A): void {
  try {
    fn(arg);
  } catch (error) {
    ignored(logger, what, error);
  }
}

function ignored(logger: Logger, what: string, error: unknown): void {
  logger.debug({ err: errorMessage(error), callback: what }, `${what} threw; ignored`);
}
