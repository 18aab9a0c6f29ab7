#!/usr/bin/env node
import { readFileSync } from 'node:fs';

import { TxOutboxError } from '../errors.js';
import { devCommand } from './dev-command.js';
import { migrateCommand } from './migrate-command.js';
import { runCommand } from './run-command.js';
import { USAGE, UsageError } from './usage.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Runs one CLI invocation; returns the process exit code (0 ok, 1 failed, 2 bad usage). */
export interface CliIo {
  readonly env: NodeJS.ProcessEnv;
  out(text: string): void;
  err(text: string): void;
  /** stdout is a terminal (status lines redraw in place). */
  readonly interactive?: boolean;
}

const processIo: CliIo = {
  env: process.env,
  interactive: process.stdout.isTTY,
  out: (text) => {
    process.stdout.write(text);
  },
  err: (text) => {
    process.stderr.write(text);
  },
};

export async function main(argv: string[], io: CliIo = processIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'migrate':
        await migrateCommand(rest, io);
        return 0;
      case 'dev':
        return await devCommand(rest, { ...io, interactive: io.interactive ?? false });
      case 'run':
        return await runCommand(rest, io);
      case '--version':
        io.out(`${version()}\n`);
        return 0;
      case undefined:
      case '--help':
      case 'help':
        io.out(USAGE);
        return 0;
      default:
        throw new UsageError(`unknown command ${JSON.stringify(command)}`);
    }
  } catch (error) {
    // parseArgs reports unknown or malformed flags as TypeErrors with an ERR_PARSE_ARGS_* code.
    const parseError = error instanceof TypeError && String((error as NodeJS.ErrnoException).code).startsWith('ERR_PARSE_ARGS');
    if (error instanceof UsageError || parseError) {
      io.err(`txoutbox: ${(error as Error).message}\n\n${USAGE}`);
      return 2;
    }
    if (error instanceof TxOutboxError) {
      io.err(`txoutbox: ${error.message}\n`);
      return 1;
    }
    io.err(`txoutbox: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}

// Run when executed as the `txoutbox` bin, not when imported by tests.
const invokedAs = process.argv[1] ?? '';
if (/(?:^|[\\/])(?:txoutbox|main\.[jt]s)$/.test(invokedAs)) {
  process.exitCode = await main(process.argv.slice(2));
}
