/**
 * A broker server (nats-server, redis-server, ...) from Debian's package, run by a test as a child
 * process on a free 127.0.0.1 port with its data in a temp dir: start, stop, restart (same port,
 * same data), and killed when the test process exits whatever happened. Each broker's file
 * (nats-server.ts, redis-server.ts) says how to install, start and recognise it.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { inCi } from './browser.js';

/** How to run one kind of server. */
export interface ServerSpec {
  /** Names it in messages (`nats-server`). */
  readonly name: string;
  /** The binary's absolute path (from its ensure script). */
  readonly binary: string;
  /** Its arguments for a port and a data dir. */
  readonly args: (port: number, dataDir: string) => readonly string[];
  /** A line of its output that says it accepts clients. */
  readonly ready: RegExp;
}

// Bounds, not expectations: a step that needs longer is broken, and the test says which step hung.
// Generous, because the full suite shares 2 cores.
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

const running = new Set<ChildProcess>();
process.on('exit', () => {
  // The last resort when a test dies without its after hooks: no server outlives the test process.
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Runs a project script (scripts/ensure-<broker>.sh) that installs a broker and prints `<key>=<path>`.
 * Missing and uninstallable: the reason, printed loudly (the caller skips); in CI (inCi()) a rejection,
 * so the broker's tests fail instead of skipping.
 */
export function ensureServerBinary(script: string, key: string): Promise<{ path: string } | { skip: string }> {
  return new Promise((resolve, reject) => {
    execFile('bash', [script], { timeout: 600_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const path = new RegExp(`^${key}=(.+)$`, 'm').exec(stdout)?.[1]?.trim();
      if (error === null && path !== undefined && path !== '') {
        resolve({ path });
        return;
      }
      const said = stderr.trim().split('\n').at(-1)?.replace(/^!!! /, '');
      const reason = `${key} unavailable (${script} failed: ${said === undefined || said === '' ? (error?.message ?? 'no output') : said})`;
      if (inCi()) {
        reject(
          new Error(
            `CI is set, so the broker tests fail instead of skipping: the project's scripts must install everything the tests need. ${reason}`,
          ),
        );
        return;
      }
      console.warn(`!!! SKIPPING broker tests: ${reason}`);
      resolve({ skip: reason });
    });
  });
}

/** A free TCP port on 127.0.0.1 (free now: the server binds it a moment later). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address === null || typeof address === 'string') reject(new Error('no port'));
        else resolve(address.port);
      });
    });
  });
}

export class ServerProcess {
  readonly spec: ServerSpec;
  readonly port: number;
  readonly dataDir: string;
  /** Its output so far (both streams), for a failure's message. */
  output = '';
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();

  private constructor(spec: ServerSpec, port: number, dataDir: string) {
    this.spec = spec;
    this.port = port;
    this.dataDir = dataDir;
  }

  /** Starts the server on a free port with a fresh data dir; resolves once it accepts clients. */
  static async start(spec: ServerSpec): Promise<ServerProcess> {
    const dataDir = await mkdtemp(join(tmpdir(), `txoutbox-${spec.name}-`));
    const server = new ServerProcess(spec, await freePort(), dataDir);
    try {
      await server.restart();
    } catch (error) {
      await server.close();
      throw error;
    }
    return server;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** The running server's pid (a probe reads its CPU time from /proc); undefined while stopped. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts it again (after stop()): the same port, the same data dir. */
  async restart(): Promise<void> {
    if (this.#child !== undefined) throw new Error(`${this.spec.name} is running already`);
    const child = spawn(this.spec.binary, [...this.spec.args(this.port, this.dataDir)], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    running.add(child);
    this.#exited = new Promise((resolve) => {
      child.once('exit', () => {
        running.delete(child);
        if (this.#child === child) this.#child = undefined;
        resolve();
      });
    });
    const since = this.output.length;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        done(
          new Error(
            `${this.spec.name} on port ${this.port} was not ready within ${READY_TIMEOUT_MS} ms:\n${this.output.slice(since)}`,
          ),
        );
      }, READY_TIMEOUT_MS);
      const onData = (chunk: Buffer): void => {
        this.output += chunk.toString('utf8');
        if (this.spec.ready.test(this.output.slice(since))) done();
      };
      const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
        done(
          new Error(
            `${this.spec.name} exited (code ${code}, signal ${signal}) before it was ready:\n${this.output.slice(since)}`,
          ),
        );
      };
      const onError = (error: Error): void => {
        done(error);
      };
      const done = (error?: Error): void => {
        clearTimeout(timer);
        child.off('exit', onExit);
        child.off('error', onError);
        if (error === undefined) resolve();
        else reject(error);
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', onExit);
      child.once('error', onError);
    }).catch(async (error: unknown) => {
      await this.stop();
      throw error;
    });
  }

  /**
   * Stops it and waits for the exit; its data stays. SIGTERM (default) is a clean shutdown, SIGKILL
   * after STOP_TIMEOUT_MS; `'SIGKILL'` is a crash.
   */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.#child;
    if (child === undefined) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.#exited;
    clearTimeout(timer);
  }

  /** Stops it and removes its data dir. */
  async close(): Promise<void> {
    await this.stop();
    await rm(this.dataDir, { recursive: true, force: true });
  }
}
