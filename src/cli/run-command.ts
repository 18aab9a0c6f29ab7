import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { errorMessage } from '../errors.js';
import { type ConfiguredRunner, runnerFromConfig } from '../runner/runner-from-config.js';
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
  // Every signal handler is in place before the start, which takes seconds (the database, the
  // metrics port, the first forks): a SIGHUP's or SIGTERM's default action there ended the runner
  // at once, its children left to notice the closed channel. A SIGHUP then reloads once started;
  // a stop signal stops it, with a drain, as soon as it is up.
  let configured: ConfiguredRunner | undefined;
  // An object: its flags change in the signal handlers, between awaits.
  const signals = { stopping: false, reloadWhenStarted: false };
  // Stays installed while stopping: SIGHUP's default action would end the runner mid-drain.
  const onHangup = () => {
    if (signals.stopping) logger.warn({ config: path }, 'SIGHUP while stopping: not reloading');
    else if (configured === undefined) {
      if (!signals.reloadWhenStarted) logger.info({ config: path }, 'SIGHUP while starting: reloading the config once started');
      signals.reloadWhenStarted = true;
    } else {
      logger.info({ config: path }, 'SIGHUP: reloading the config');
      void configured.reload();
    }
  };
  process.on('SIGHUP', onHangup);
  const stopSignal = untilStopSignal(
    logger,
    'stop signal while stopping: killing the consumers now (their rows are redelivered after the lease)',
    () => {
      if (configured === undefined) {
        // Still starting (a database that does not answer, say): a second signal is a way out.
        logger.warn({}, 'second stop signal while starting: exiting now');
        process.exit(1);
      }
      configured.runner.kill().catch((error: unknown) => {
        logger.error({ err: errorMessage(error) }, 'killing the consumers failed');
      });
    },
  );
  void stopSignal.then((signal) => {
    signals.stopping = true;
    if (configured === undefined) logger.info({ signal }, 'stop signal while starting: stopping as soon as the runner is up');
  });
  try {
    configured = await runnerFromConfig(path, io.env, logger);
  } catch (error) {
    process.off('SIGHUP', onHangup);
    throw error;
  }
  if (signals.reloadWhenStarted && !signals.stopping) onHangup();

  const signal = await stopSignal;
  logger.info({ signal }, 'stopping: consumers drain within their graceful timeout');
  const drained = await configured.runner.stop();
  process.off('SIGHUP', onHangup);
  return drained ? 0 : 1;
}
