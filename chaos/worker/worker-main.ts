/**
 * A chaos worker: the product's Outbox consuming the chain queue with the chain handler, which
 * publishes its follow-ups through the same Outbox (one Outbox per application is the common shape,
 * and it is the one where a draining Outbox must still accept the handlers' publishes). With a
 * `relay` spec it relays the queue to a broker through one of the product's sinks instead
 * (`outbox.relay()`, the relay's own defaults under the spec's subscribe options): what arrived is
 * then counted at the broker, not here.
 *
 * It reports a heartbeat every 250 ms (recorder event counts, the last claim that returned rows),
 * answers pings with `outbox.ping()`, and on `stop` times `outbox.stop()` and exits. It exits when
 * the harness's channel closes, so a dead harness leaves no worker behind.
 */
import type { OutboxEvent } from '../../src/index.js';
import type { RelaySink } from '../../src/relay/index.js';
import { chainHandler, failureRecordsWritten, hearClientErrors } from '../handlers/chain.js';
import { DLQ_TABLE, OUTBOX_TABLE, QUEUE } from '../lib/ledger-sql.js';
import { loadProduct, loadRelay } from '../lib/product.js';
import { type FromWorker, isToWorker, type RelaySpec, type WorkerSpec } from './protocol.js';
import { traceUnheardClientErrors } from './unheard-client-errors.js';

function send(message: FromWorker): void {
  if (process.connected) process.send?.(message);
}

/** The sink a relay spec names, from the product's txoutbox/relay, and its `stats` when it keeps some. */
async function relaySink(
  productRoot: string,
  spec: RelaySpec,
): Promise<{ sink: RelaySink; stats: () => Record<string, number> | undefined }> {
  const relay = await loadRelay(productRoot);
  // JSON options: the factories validate them (an unknown or bad one fails the worker's start).
  const sink: RelaySink & { stats?: Record<string, number> } = relay[spec.factory](spec.options as never);
  return { sink, stats: () => (sink.stats === undefined ? undefined : { ...sink.stats }) };
}

async function run(spec: WorkerSpec): Promise<void> {
  const product = await loadProduct(spec.productRoot);
  traceUnheardClientErrors(product.pg.Client);
  const events: Record<string, number> = {};
  let lastFetchedAt: number | null = null;
  const recorder = (event: OutboxEvent): void => {
    events[event.type] = (events[event.type] ?? 0) + 1;
    if (event.type === 'relayed') events[`relayed:${event.outcome}`] = (events[`relayed:${event.outcome}`] ?? 0) + 1;
    if (event.type === 'fetched') lastFetchedAt = Date.now();
  };
  const outbox = new product.txoutbox.Outbox({
    connectionString: spec.databaseUrl,
    poolSize: spec.poolSize,
    table: OUTBOX_TABLE,
    dlqTable: DLQ_TABLE,
    gracefulTimeoutMs: spec.gracefulTimeoutMs,
    ...(spec.transactionPooling === undefined ? {} : { transactionPooling: spec.transactionPooling }),
    ...(spec.listenDatabaseUrl === undefined ? {} : { listenConnectionString: spec.listenDatabaseUrl }),
    logger: product.txoutbox.consoleLogger('info'),
    recorder,
  });
  let appPool: { end(): Promise<void> } | undefined;
  let sinkStats: () => Record<string, number> | undefined = () => undefined;
  if (spec.relay === undefined) {
    const pool = hearClientErrors(
      new product.pg.Pool({
        connectionString: spec.appDatabaseUrl,
        max: Number(spec.subscribe.concurrency ?? 1) + 2,
        // The application's own timeouts: a handler must not hang on a dead connection forever.
        connectionTimeoutMillis: 5_000,
        query_timeout: 10_000,
        keepAlive: true,
      }),
    );
    appPool = pool;
    const transactional = spec.subscribe.transactional === true;
    const sleepOnServer = spec.handlerSleepsOnServer === true;
    const handler = chainHandler({ pool, publisher: outbox, delayMs: spec.handlerDelayMs, transactional, sleepOnServer });
    outbox.subscribe(QUEUE, handler, {
      name: 'chaos',
      ...spec.subscribe,
    });
  } else {
    const { sink, stats } = await relaySink(spec.productRoot, spec.relay);
    sinkStats = stats;
    outbox.relay(QUEUE, sink, spec.subscribe);
  }
  outbox.start();
  const heartbeat = setInterval(() => {
    send({ type: 'heartbeat', lastFetchedAt, events: { ...events }, sinkStats: sinkStats() });
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
    // The application's pool is not the product's: close it without letting it hold the exit,
    // after the failure records its handlers did not wait for (bounded too).
    await failureRecordsWritten(2_000);
    if (appPool !== undefined) await Promise.race([appPool.end(), new Promise((resolve) => setTimeout(resolve, 1_000))]);
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
