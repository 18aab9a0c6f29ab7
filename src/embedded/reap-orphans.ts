import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { delay } from '../util/backoff.js';
import { isPostmasterOf } from './postmaster-identity.js';

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

/** How long to wait for a SIGQUIT postmaster to exit before deleting its directory anyway. */
const EXIT_WAIT_MS = 5_000;

/** Waits (bounded) for `pid` to exit: its processes still write under the data directory while they stop. */
async function waitForExit(pid: number): Promise<void> {
  const deadline = Date.now() + EXIT_WAIT_MS;
  while (isAlive(pid) && Date.now() < deadline) await delay(20);
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
    const dataDir = join(dir, 'data');
    const postmaster = await readPid(join(dataDir, 'postmaster.pid'));
    // The recorded pid may be stale and now someone else's: signal it only if it is this
    // directory's server. A stale directory is deleted either way.
    if (postmaster !== undefined && isAlive(postmaster) && isPostmasterOf(postmaster, dataDir)) {
      try {
        // SIGQUIT = immediate shutdown: nothing in a test server is worth a checkpoint.
        process.kill(postmaster, 'SIGQUIT');
      } catch {
        continue;
      }
      await waitForExit(postmaster);
    }
    // Retries: a backend that outlives the postmaster by a moment can still add a file (ENOTEMPTY).
    await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
    reaped += 1;
  }
  return reaped;
}
