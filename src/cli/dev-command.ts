import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import pg from 'pg';

import { DEMO_QUEUES, DemoShop } from '../dev/demo-shop.js';
import { keepDatabase, type KeptDatabase } from '../dev/keep-database.js';
import { StatusLine } from '../dev/status-line.js';
import { Outbox } from '../outbox.js';
import { runnerFromConfig } from '../runner/runner-from-config.js';
import { parseTableName } from '../schema/identifiers.js';
import { consoleLogger, type Logger } from '../util/logger.js';
import { ownConnectionConfig } from '../util/owned-pool.js';
import { untilStopSignal } from './stop-signal.js';
import { OptionError } from './usage.js';

export interface DevIo {
  readonly env: NodeJS.ProcessEnv;
  out(text: string): void;
  /** True when `out` is a terminal: the status line redraws in place. */
  readonly interactive: boolean;
}

/** The demo handlers, beside this file: .ts under tsx (`npm start`), .js when built. */
const HANDLERS = fileURLToPath(new URL(`../dev/demo-handlers${extname(fileURLToPath(import.meta.url))}`, import.meta.url));

/** The database URL reaches the children through the environment, never through the config file. */
const DATABASE_ENV = 'TXOUTBOX_DEV_DATABASE_URL';

function demoConfig(port: number): string {
  return `# Written by \`txoutbox dev\`: two consumers × two processes. Run your own with \`txoutbox run <file>\`.
database:
  url: \${${DATABASE_ENV}}
metrics:
  prometheus:
    host: 127.0.0.1
    port: ${port}
consumers:
  emails:
    handler: ${HANDLERS}
    export: sendConfirmationEmail
    queues: [${DEMO_QUEUES.emails}]
    processes: 2
    concurrency: 8
  stock:
    handler: ${HANDLERS}
    export: reserveStock
    queues: [${DEMO_QUEUES.stock}]
    processes: 2
    concurrency: 8
`;
}

/** Node runs a timer of more than 2^31 − 1 ms at once: the longest --duration, in seconds. */
const MAX_DURATION_S = Math.floor(2_147_483_647 / 1000);
/** The slowest --rate: one order a day keeps the shop's interval a timer Node keeps. */
const MIN_RATE = 1 / 86_400;
const MAX_RATE = 10_000;

/** A number flag within [min, max]: bad usage (exit 2) naming the flag, the value and the range. */
function boundedNumber(option: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const parsed = value.trim() === '' ? Number.NaN : Number(value);
  if (!Number.isFinite(parsed) || parsed < min || parsed > max) {
    throw new OptionError({
      option,
      problem: `expected a number from ${String(min)} to ${String(max)}, got '${value}'`,
      fix: `pass a value in that range, or leave ${option} out.`,
    });
  }
  return parsed;
}

function portOf(value: string | undefined): number {
  if (value === undefined) return 9464;
  // Digits only: Number('') is 0 (a random port) and Number('0x50') is 80.
  const port = /^\d{1,5}$/.test(value) ? Number(value) : Number.NaN;
  if (!(port <= 65535)) {
    throw new OptionError({
      option: '--port',
      problem: `expected a TCP port, 0 to 65535 (0 picks a free one), got '${value}'`,
      fix: 'pass a port number, or leave --port out for 9464.',
    });
  }
  return port;
}

async function startDatabase(
  env: NodeJS.ProcessEnv,
  out: (text: string) => void,
): Promise<{ url: string; server?: KeptDatabase }> {
  const external = env.DATABASE_URL;
  if (external !== undefined && external !== '') {
    out('database: DATABASE_URL\n');
    return { url: external };
  }
  // Stopped by us, after the consumers drained: they need it until then.
  const server = await keepDatabase();
  out(`database: embedded PostgreSQL on 127.0.0.1:${server.port}\n`);
  return { url: server.connectionString, server };
}

/**
 * `txoutbox dev` (`npm start`): embedded PostgreSQL, the schema, a shop that writes orders and
 * publishes their events in the same transaction, and the runner with two consumers × two
 * processes and one /metrics. A status line shows published, handled, pending, oldest age and
 * rate. Ctrl-C (or --duration) stops in order: the shop, the consumers (drained), the database.
 */
export async function devCommand(args: string[], io: DevIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { rate: { type: 'string' }, duration: { type: 'string' }, port: { type: 'string' } },
    strict: true,
    allowPositionals: false,
  });
  const ordersPerSecond = boundedNumber('--rate', values.rate, 25, MIN_RATE, MAX_RATE);
  const durationSeconds =
    values.duration === undefined ? undefined : boundedNumber('--duration', values.duration, 0, 0.001, MAX_DURATION_S);
  const port = portOf(values.port);
  const logger: Logger = consoleLogger('warn');

  const { url, server } = await startDatabase(io.env, (text) => {
    io.out(text);
  });
  // Bounded as txoutbox's own pools are: a database that stops answering fails the shop's order
  // (and the status line) instead of holding Ctrl-C's stop for good.
  const pool = new pg.Pool(
    ownConnectionConfig({ connectionString: url, max: 4, statement_timeout: 10_000, query_timeout: 11_000 }),
  );
  pool.on('error', (error) => {
    logger.warn({ err: error.message }, 'demo database connection lost');
  });
  const outbox = new Outbox({ pool, logger });
  const dir = await mkdtemp(join(tmpdir(), 'txoutbox-dev-'));
  try {
    await outbox.migrate();
    const shop = new DemoShop(pool, outbox, logger);
    await shop.prepare();
    const configPath = join(dir, 'txoutbox.yaml');
    await writeFile(configPath, demoConfig(port));
    const { runner } = await runnerFromConfig(configPath, { ...io.env, [DATABASE_ENV]: url }, logger);
    io.out(`metrics: ${runner.metricsUrl ?? 'disabled'}\nconfig: ${configPath}\nCtrl-C to stop\n`);
    shop.start(ordersPerSecond);

    const status = new StatusLine({
      pool,
      table: parseTableName('table', outbox.table).sql,
      prefix: 'txoutbox',
      published: () => shop.published,
      registry: () => runner.registry(),
    });
    let ticks = 0;
    const timer = setInterval(() => {
      ticks += 1;
      void status.render().then((line) => {
        if (io.interactive) io.out(`\r\x1b[K${line}`);
        else if (ticks % 5 === 0) io.out(`${line}\n`);
      });
    }, 1000);

    let deadline: NodeJS.Timeout | undefined;
    const stopAfter = new Promise<string>((resolve) => {
      if (durationSeconds !== undefined)
        deadline = setTimeout(() => {
          resolve('--duration');
        }, durationSeconds * 1000);
    });
    const reason = await Promise.race([
      untilStopSignal(logger, 'stop signal while stopping: exiting now', () => {
        // A second Ctrl-C is the way out of a stop that waits (a database that does not answer).
        process.exit(1);
      }),
      stopAfter,
    ]);
    clearTimeout(deadline);
    clearInterval(timer);
    io.out(`${io.interactive ? '\n' : ''}stopping (${reason}): shop, then consumers drain\n`);
    await shop.stop();
    const drained = await runner.stop();
    io.out(`${await status.render()}\n`);
    return drained ? 0 : 1;
  } finally {
    await outbox.stop();
    await pool.end();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
    io.out('stopped cleanly\n');
  }
}
