import type { Logger } from '../util/logger.js';

/**
 * Resolves on the first SIGTERM or SIGINT. The listeners stay for the rest of the process: a second
 * Ctrl-C while stopping must not take the default action (exit at once) and leave children or an
 * embedded server behind; it is logged instead.
 */
export function untilStopSignal(logger: Logger, whileStopping: string): Promise<NodeJS.Signals> {
  let stopping = false;
  return new Promise((resolve) => {
    const onStop = (received: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal: received }, whileStopping);
        return;
      }
      stopping = true;
      resolve(received);
    };
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);
  });
}
