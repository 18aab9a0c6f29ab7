import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { errorMessage } from '../errors.js';
import { runnerFromConfig } from '../runner/runner-from-config.js';
import { consoleLogger, type Logger, withFields } from '../util/logger.js';
import { logLevelOf } from './environment.js';
import { untilStopSignal } from './stop-signal.js';
import { UsageError } from './usage.js';

export interface RunIo {
  readonly env: NodeJS.ProcessEnv;
}

/** The supervisor's logger: every line carries its pid, as the children's carry theirs. */
function runnerLogger(env: NodeJS.ProcessEnv): Logger {
  return withFields(consoleLogger(logLevelOf(env)), { pid: process.pid, role: 'supervisor' });
}

/**
 * `txoutbox run <config>`: validates the config (nothing starts when it is wrong), runs the
 * consumers until SIGTERM/SIGINT, and reloads on SIGHUP. A second SIGTERM/SIGINT while stopping
 * kills the consumers and exits. Resolves with the exit code: 0 when every consumer drained in
 * time, 1 when some had to be killed (at the deadline or by the second signal).
 */
export async function runCommand(args: string[], io: RunIo): Promise<number> {
  const { positionals } = parseArgs({ args, options: {}, strict: true, allowPositionals: true });
  if (positionals.length !== 1) {
    throw new UsageError('run takes one config file: txoutbox run txoutbox.yaml');
  }
  const path = resolve(positionals[0] ?? '');
  const logger = runnerLogger(io.env);
  const { runner, reload } = await runnerFromConfig(path, io.env, logger);
  let stopping = false;
  // Stays installed while stopping: SIGHUP's default action would end the runner mid-drain.
  const onHangup = () => {
    if (stopping) {
      logger.warn({ config: path }, 'SIGHUP while stopping: not reloading');
      return;
    }
    logger.info({ config: path }, 'SIGHUP: reloading the config');
    void reload();
  };
  process.on('SIGHUP', onHangup);

  const signal = await untilStopSignal(
    logger,
    'stop signal while stopping: killing the consumers now (their rows are redelivered after the lease)',
    () => {
      runner.kill().catch((error: unknown) => {
        logger.error({ err: errorMessage(error) }, 'killing the consumers failed');
      });
    },
  );
  stopping = true;
  logger.info({ signal }, 'stopping: consumers drain within their graceful timeout');
  const drained = await runner.stop();
  process.off('SIGHUP', onHangup);
  return drained ? 0 : 1;
}
