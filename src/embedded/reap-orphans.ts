import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * A process that was SIGKILLed cannot stop its embedded server, so every server directory records
 * its owner's pid. On the next start we stop servers whose owner is gone and delete their
 * directories: a crashed run leaves no `postgres` behind for longer than one restart.
 */
export const SERVER_DIR_PREFIX = 'txoutbox-pg-';
export const OWNER_FILE = 'owner.pid';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readPid(file: string): Promise<number | undefined> {
  try {
    const first = (await readFile(file, 'utf8')).split('\n')[0] ?? '';
    const pid = Number.parseInt(first, 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export async function reapOrphanServers(parentDir: string): Promise<number> {
  let reaped = 0;
  let entries: string[];
  try {
    entries = await readdir(parentDir);
  } catch {
    return 0;
  }
  for (const entry of entries) {
    if (!entry.startsWith(SERVER_DIR_PREFIX)) continue;
    const dir = join(parentDir, entry);
    const owner = await readPid(join(dir, OWNER_FILE));
    if (owner === undefined || isAlive(owner)) continue;
    const postmaster = await readPid(join(dir, 'data', 'postmaster.pid'));
    if (postmaster !== undefined && isAlive(postmaster)) {
      try {
        // SIGQUIT = immediate shutdown: nothing in a test server is worth a checkpoint.
        process.kill(postmaster, 'SIGQUIT');
      } catch {
        continue;
      }
    }
    await rm(dir, { recursive: true, force: true });
    reaped += 1;
  }
  return reaped;
}
