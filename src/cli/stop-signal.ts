import type { Logger } from '../util/logger.js';

/**
 * Resolves on the first SIGTERM or SIGINT. The listeners stay for the rest of the process, so a
 * later signal never takes the default action (exit at once, leaving children or an embedded server
 * behind): it is logged with `whileStopping`, and `onRepeat`, when given, is called — `txoutbox
 * run` kills its consumers then, so a second signal is a prompt way out rather than ignored
 * (issue 13 item 4).
 */
export function untilStopSignal(
  logger: Logger,
  whileStopping: string,
  onRepeat?: (signal: NodeJS.Signals) => void,
): Promise<NodeJS.Signals> {
  let stopping = false;
  return new Promise((resolve) => {
    const onStop = (received: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal: received }, whileStopping);
        onRepeat?.(received);
        return;
      }
      stopping = true;
      resolve(received);
    };
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);
  });
}
