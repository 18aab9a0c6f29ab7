import { execFile } from 'node:child_process';

import { main } from '../../src/cli/main.js';

export interface BinRun {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;
// Resolved here, not by node from `cwd`: a run from a temporary directory must still find tsx.
const TSX = import.meta.resolve('tsx');

/**
 * The real `txoutbox` bin, as an operator runs it: its own process, stdin and stdout pipes (no
 * terminal, so destructive commands refuse without --yes). `env` is the whole environment apart
 * from PATH and HOME: the caller decides whether DATABASE_URL is set.
 */
export async function txoutboxBin(
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<BinRun> {
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, ...options.env };
  return await new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', TSX, MAIN, ...args],
      { env, ...(options.cwd === undefined ? {} : { cwd: options.cwd }) },
      (error, out, err) => {
        resolve({ code: error === null ? 0 : Number(error.code), out, err });
      },
    );
  });
}

/**
 * The same command through `main()` in this process: what the bin runs, minus the process start
 * (about a second under tsx). For the many bad-usage cases; each file still spawns the bin for
 * the exit code itself. The working directory is this process's.
 */
export async function txoutboxMain(args: readonly string[], env: NodeJS.ProcessEnv): Promise<BinRun> {
  let out = '';
  let err = '';
  const code = await main([...args], {
    env,
    out: (text) => {
      out += text;
    },
    err: (text) => {
      err += text;
    },
  });
  return { code, out, err };
}
