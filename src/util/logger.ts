import { terminalSafe } from './terminal-safe.js';

/**
 * The logger txoutbox writes to: pino's call shape (`logger.warn({ ...fields }, 'message')`), so a
 * pino logger can be passed as is. The default writes warnings and errors to stderr as JSON lines.
 */
export interface Logger {
  debug(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

const LEVELS = { debug: 20, info: 30, warn: 40, error: 50 } as const;
export type LogLevel = keyof typeof LEVELS;

export function consoleLogger(level: LogLevel = 'warn'): Logger {
  const threshold = LEVELS[level];
  const write =
    (name: LogLevel) =>
    (fields: Record<string, unknown>, message: string): void => {
      if (LEVELS[name] < threshold) return;
      // JSON.stringify escapes C0 but leaves DEL and C1 raw (U+009B is a one-character CSI): a
      // queue name or a reason an operator typed reached the terminal that runs `txoutbox dashboard`.
      process.stderr.write(
        `${terminalSafe(JSON.stringify({ level: name, time: new Date().toISOString(), name: 'txoutbox', msg: message, ...fields }))}\n`,
      );
    };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}

/** `base` with `fields` added to every line (a line's own fields win): the pid and role of a process, say. */
export function withFields(base: Logger, fields: Record<string, unknown>): Logger {
  const tag = (own: Record<string, unknown>) => ({ ...fields, ...own });
  return {
    debug: (own, message) => {
      base.debug(tag(own), message);
    },
    info: (own, message) => {
      base.info(tag(own), message);
    },
    warn: (own, message) => {
      base.warn(tag(own), message);
    },
    error: (own, message) => {
      base.error(tag(own), message);
    },
  };
}

export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

/** Has the four levels txoutbox logs at (txoutbox/testing checks its `logger` option with it too). */
export function isLogger(value: unknown): value is Logger {
  const logger = value as Partial<Logger> | null;
  return (
    typeof logger === 'object' &&
    logger !== null &&
    (['debug', 'info', 'warn', 'error'] as const).every((level) => typeof logger[level] === 'function')
  );
}
