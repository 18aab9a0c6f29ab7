/**
 * A private RabbitMQ broker for a test file: Debian's rabbitmq-server (installed by
 * scripts/ensure-rabbitmq.sh), started as the current user with everything of its own, so it never
 * meets the machine's service or another test file's broker:
 *
 * - a temp dir holding the data (RABBITMQ_MNESIA_BASE), the logs, the config and a HOME with a fresh
 *   Erlang cookie;
 * - a unique node name (txoutbox-<pid>-<n>@localhost), AMQP, distribution and epmd ports picked free,
 *   all bound to 127.0.0.1;
 * - its own epmd, started here (the VM is told not to start one: `-start_epmd false`, whose daemon
 *   would outlive the test) and killed by stop().
 *
 * Startup takes 5–10 s on these machines: start one broker per test file.
 *
 *   const broker = await startRabbitmq();         // t.skip(broker.skip) when it cannot be installed
 *   t.after(() => broker.close());
 *   await broker.stop(); await broker.start();    // a restart keeps the data dir (durable queues survive)
 *
 * In CI (`CI` set) a broker that cannot be installed fails the test instead of skipping it (the setup
 * contract: the project's scripts install what the tests need; test/support/browser.ts does the same).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import amqplib from 'amqplib';

import { inCi } from './browser.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/ensure-rabbitmq.sh', import.meta.url));

// Bounds, not expectations: the full suite shares 2 cores, and a broker that needs longer is broken.
const START_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 30_000;

interface Installed {
  readonly server: string;
  readonly epmd: string;
  readonly version: string;
}

let ensured: Promise<Installed | { readonly skip: string }> | undefined;

function ensureRabbitmq(): Promise<Installed | { readonly skip: string }> {
  ensured ??= new Promise((resolve, reject) => {
    execFile('bash', [SCRIPT], { timeout: 600_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const server = /^rabbitmq-server=(.+)$/m.exec(stdout)?.[1]?.trim();
      const epmd = /^epmd=(.+)$/m.exec(stdout)?.[1]?.trim();
      const version = /^rabbitmq-version=(.+)$/m.exec(stdout)?.[1]?.trim() ?? 'unknown';
      if (error === null && server !== undefined && server !== '' && epmd !== undefined && epmd !== '') {
        resolve({ server, epmd, version });
        return;
      }
      const said = stderr.trim().split('\n').at(-1)?.replace(/^!!! /, '');
      const reason = `RabbitMQ unavailable (scripts/ensure-rabbitmq.sh failed: ${said === undefined || said === '' ? (error?.message ?? 'no output') : said})`;
      if (inCi()) {
        reject(
          new Error(
            `CI is set, so the RabbitMQ tests fail instead of skipping: the project's scripts must install everything the tests need. ${reason}`,
          ),
        );
        return;
      }
      console.warn(`!!! SKIPPING RabbitMQ tests: ${reason}`);
      resolve({ skip: reason });
    });
  });
  return ensured;
}

/** A port free on 127.0.0.1 right now (the OS picks it; the broker binds it a moment later). */
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

// Every process group this module started, killed if the test process exits without stop() (a
// failed assertion, a crash): a test must not leave a broker running.
const live = new Set<ChildProcess>();
// Their temp dirs too (a broker's data is tens of MB): what close() would have removed.
const dirs = new Set<string>();
process.on('exit', () => {
  for (const child of live) killGroup(child, 'SIGKILL');
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    // detached: the child leads its own process group, which holds the VM and its helpers too.
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) =>
    child.once('exit', () => {
      resolve();
    }),
  );
}

async function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          reject(new Error(`${what} took longer than ${ms} ms`));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

let brokers = 0;

export class RabbitmqServer {
  readonly port: number;
  readonly version: string;
  /** amqp://guest:guest@127.0.0.1:<port> (guest may log in from loopback only, which is where we are). */
  readonly url: string;
  readonly #installed: Installed;
  readonly #dir: string;
  readonly #env: NodeJS.ProcessEnv;
  readonly #epmdPort: number;
  #epmd: ChildProcess | undefined;
  #broker: ChildProcess | undefined;
  #closed = false;

  private constructor(installed: Installed, dir: string, ports: { amqp: number; dist: number; epmd: number }) {
    this.#installed = installed;
    this.version = installed.version;
    this.#dir = dir;
    this.port = ports.amqp;
    this.#epmdPort = ports.epmd;
    this.url = `amqp://guest:guest@127.0.0.1:${ports.amqp}`;
    brokers += 1;
    const home = join(dir, 'home');
    mkdirSync(home, { recursive: true });
    // A fresh cookie: no other Erlang node on this machine can talk to this one. Erlang insists on 0400.
    writeFileSync(join(home, '.erlang.cookie'), randomBytes(24).toString('hex'), { mode: 0o400 });
    writeFileSync(join(dir, 'rabbitmq-env.conf'), '');
    writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
    writeFileSync(
      join(dir, 'rabbitmq.conf'),
      [`listeners.tcp.default = 127.0.0.1:${ports.amqp}`, 'log.console = false', 'log.file.level = warning', ''].join('\n'),
    );
    this.#env = {
      PATH: process.env.PATH,
      LANG: 'C.UTF-8',
      HOME: home,
      // Not the machine's /etc/rabbitmq: every file the broker reads is this one's.
      RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
      RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
      RABBITMQ_NODENAME: `txoutbox-${process.pid}-${brokers}@localhost`,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(ports.amqp),
      RABBITMQ_DIST_PORT: String(ports.dist),
      ERL_EPMD_PORT: String(ports.epmd),
      RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(dir, 'log'),
      RABBITMQ_PID_FILE: join(dir, 'rabbitmq.pid'),
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}',
    };
  }

  /** Starts a broker (installing RabbitMQ first if needed); `{ skip }` when it cannot be installed outside CI. */
  static async start(): Promise<RabbitmqServer | { readonly skip: string }> {
    const installed = await ensureRabbitmq();
    if ('skip' in installed) return installed;
    const dir = mkdtempSync(join(tmpdir(), 'txoutbox-rabbitmq-'));
    dirs.add(dir);
    const ports = { amqp: await freePort(), dist: await freePort(), epmd: await freePort() };
    const server = new RabbitmqServer(installed, dir, ports);
    try {
      await server.start();
    } catch (error) {
      await server.close();
      throw error;
    }
    return server;
  }

  get running(): boolean {
    return this.#broker !== undefined;
  }

  /** Starts the broker (again, after stop(): same node, same data dir) and resolves once amqplib can connect. */
  async start(): Promise<void> {
    if (this.#closed) throw new Error('this RabbitmqServer was closed');
    if (this.#broker !== undefined) throw new Error('the broker is running already');
    this.#epmd ??= this.#spawn(this.#installed.epmd, ['-address', '127.0.0.1', '-port', String(this.#epmdPort)], 'epmd.log');
    const broker = this.#spawn(this.#installed.server, [], 'broker.log');
    this.#broker = broker;
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (broker.exitCode !== null || broker.signalCode !== null) {
        this.#broker = undefined;
        throw new Error(`rabbitmq-server exited (${broker.exitCode ?? broker.signalCode}) while starting:\n${this.logTail()}`);
      }
      try {
        const connection = await amqplib.connect(this.url, { timeout: 2_000 });
        await connection.close();
        return;
      } catch {
        // Not listening yet, or listening but still booting (it refuses connections until ready).
      }
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`rabbitmq-server did not accept connections within ${START_TIMEOUT_MS} ms:\n${this.logTail()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /**
   * Stops the broker and waits until it has exited; the data dir and epmd stay for start().
   * Graceful (SIGTERM: the broker closes its connections with CONNECTION_FORCED, as a service
   * restart does) unless `kill` (SIGKILL: a crash, the sockets just reset).
   */
  async stop(options: { kill?: boolean } = {}): Promise<void> {
    const broker = this.#broker;
    if (broker === undefined) return;
    if (options.kill === true) killGroup(broker, 'SIGKILL');
    else broker.kill('SIGTERM');
    try {
      await within(exited(broker), STOP_TIMEOUT_MS, 'stopping rabbitmq-server');
    } catch {
      killGroup(broker, 'SIGKILL');
      await within(exited(broker), STOP_TIMEOUT_MS, 'killing rabbitmq-server');
    }
    // The script exits once the VM did; its helpers (erl_child_setup) end with it. Whatever is left
    // in the group goes now, so a restart never meets a half-dead node of the same name.
    killGroup(broker, 'SIGKILL');
    live.delete(broker);
    this.#broker = undefined;
  }

  /** Stops everything this broker started (the broker, its epmd) and deletes its dir. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.stop({ kill: true });
    const epmd = this.#epmd;
    if (epmd !== undefined) {
      killGroup(epmd, 'SIGKILL');
      await within(exited(epmd), STOP_TIMEOUT_MS, 'stopping epmd');
      live.delete(epmd);
    }
    rmSync(this.#dir, { recursive: true, force: true });
    dirs.delete(this.#dir);
  }

  /** Runs `rabbitmqctl <args>` against this node (its cookie, epmd port and name); resolves with its output. */
  ctl(...args: string[]): Promise<string> {
    const rabbitmqctl = join(dirname(this.#installed.server), 'rabbitmqctl');
    return new Promise((resolve, reject) => {
      execFile(rabbitmqctl, args, { env: this.#env, cwd: this.#dir, timeout: STOP_TIMEOUT_MS }, (error, stdout, stderr) => {
        if (error === null) resolve(stdout);
        else reject(new Error(`rabbitmqctl ${args.join(' ')} failed: ${stderr.trim() || error.message}`));
      });
    });
  }

  /** The end of the broker's console output, for a failure message. */
  logTail(): string {
    try {
      return readFileSync(join(this.#dir, 'broker.log'), 'utf8').split('\n').slice(-30).join('\n');
    } catch {
      return '(no log)';
    }
  }

  #spawn(command: string, args: readonly string[], log: string): ChildProcess {
    // Output to a file, not a pipe: nobody reads a pipe while the test runs, and a full one stalls the VM.
    const fd = openSync(join(this.#dir, log), 'a');
    try {
      const child = spawn(command, args, { cwd: this.#dir, env: this.#env, stdio: ['ignore', fd, fd], detached: true });
      live.add(child);
      child.unref();
      return child;
    } finally {
      closeSync(fd);
    }
  }
}

/** A private broker for this test file; see the module comment. */
export function startRabbitmq(): Promise<RabbitmqServer | { readonly skip: string }> {
  return RabbitmqServer.start();
}
