/**
 * A chaos worker: the product's Outbox consuming the chain queue with the chain handler, which
 * publishes its follow-ups through the same Outbox (one Outbox per application is the common shape,
 * and it is the one where a draining Outbox must still accept the handlers' publishes).
 *
 * It reports a heartbeat every 250 ms (recorder event counts, the last claim that returned rows),
 * answers pings with `outbox.ping()`, and on `stop` times `outbox.stop()` and exits. It exits when
 * the harness's channel closes, so a dead harness leaves no worker behind.
 */
import type { OutboxEvent } from '../../src/index.js';
import { chainHandler } from '../handlers/chain.js';
import { DLQ_TABLE, OUTBOX_TABLE, QUEUE } from '../lib/ledger-sql.js';
import { loadProduct } from '../lib/product.js';
import { type FromWorker, isToWorker, type WorkerSpec } from './protocol.js';

function send(message: FromWorker): void {
  if (process.connected) process.send?.(message);
}

async function run(spec: WorkerSpec): Promise<void> {
  const product = await loadProduct(spec.productRoot);
  const events: Record<string, number> = {};
  let lastFetchedAt: number | null = null;
  const recorder = (event: OutboxEvent): void => {
    events[event.type] = (events[event.type] ?? 0) + 1;
    if (event.type === 'fetched') lastFetchedAt = Date.now();
  };
  const outbox = new product.txoutbox.Outbox({
    connectionString: spec.databaseUrl,
    poolSize: spec.poolSize,
    table: OUTBOX_TABLE,
    dlqTable: DLQ_TABLE,
    gracefulTimeoutMs: spec.gracefulTimeoutMs,
    logger: product.txoutbox.consoleLogger('info'),
    recorder,
  });
  const appPool = new product.pg.Pool({
    connectionString: spec.appDatabaseUrl,
    max: Number(spec.subscribe.concurrency ?? 1) + 2,
    // The application's own timeouts: a handler must not hang on a dead connection forever.
    connectionTimeoutMillis: 5_000,
    query_timeout: 10_000,
    keepAlive: true,
  });
  appPool.on('error', () => undefined);
  outbox.subscribe(QUEUE, chainHandler({ pool: appPool, publisher: outbox, delayMs: spec.handlerDelayMs }), {
    name: 'chaos',
    ...spec.subscribe,
  });
  outbox.start();
  const heartbeat = setInterval(() => {
    send({ type: 'heartbeat', lastFetchedAt, events: { ...events } });
  }, 250);

  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    const started = performance.now();
    await outbox.stop();
    const ms = performance.now() - started;
    clearInterval(heartbeat);
    send({ type: 'stopped', ms, events: { ...events } });
    // The application's pool is not the product's: close it without letting it hold the exit.
    await Promise.race([appPool.end(), new Promise((resolve) => setTimeout(resolve, 1_000))]);
    process.exit(0);
  };
  process.on('message', (message) => {
    if (!isToWorker(message)) return;
    if (message.type === 'stop') void stop();
    if (message.type === 'ping') {
      const started = performance.now();
      void outbox.ping().then((ok) => {
        send({ type: 'pong', ok, ms: performance.now() - started });
      });
    }
  });
  send({ type: 'ready' });
}

process.on('disconnect', () => process.exit(0));
process.once('message', (message) => {
  if (!isToWorker(message) || message.type !== 'start') return;
  run(message.spec).catch((error: unknown) => {
    send({ type: 'fatal', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    process.exit(1);
  });
});
