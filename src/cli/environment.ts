import type { LogLevel } from '../util/logger.js';

/** A flag or variable set to '' counts as not set (`DATABASE_URL= txoutbox …`, `--token ''`). */
export function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** `$TXOUTBOX_LOG_LEVEL` for the commands that log (run, dashboard): debug, warn or error; anything else is info. */
export function logLevelOf(env: NodeJS.ProcessEnv): LogLevel {
  const level = env.TXOUTBOX_LOG_LEVEL;
  return level === 'debug' || level === 'warn' || level === 'error' ? level : 'info';
}
