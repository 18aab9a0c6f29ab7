/**
 * Entry point of one consumer or relay process forked by `txoutbox run`. It waits for its spec, runs
 * one Outbox with one subscription (a consumer's handler, or a relay to a sink) and its own
 * Prometheus registry (both seams), with `tracing` in its spec the OpenTelemetry SDK and
 * tracingMiddleware (src/runner/tracing/child-tracing.ts, flushed at the end of a drain), reports
 * the registry to the supervisor every flush interval and its ping() every HEALTH_INTERVAL_MS, and drains on SIGTERM/SIGINT, on a `stop` message or when the
 * supervisor's channel closes (a supervisor that died must not leave consumers behind).
 *
 * States: waiting (for `start`) → running → draining → exited. Exit code 0 after a drain, 1 when
 * the consumer could not start (bad handler module, unreachable database): the supervisor restarts
 * it with backoff either way. A relay whose broker is down starts all the same (its rows wait in
 * the table, the sink retries) and reports `health` down until the broker answers.
 */
import { pathToFileURL } from 'node:url';

import { Registry } from 'prom-client';

import { errorMessage } from '../../errors.js';
import { Outbox } from '../../outbox.js';
import { prometheusMiddleware, prometheusRecorder } from '../../prometheus/index.js';
import { StatsdClient, statsdMiddleware, statsdRecorder } from '../../statsd/index.js';
import type { Handler } from '../../subscriber/message.js';
import type { StandardSchemaV1 } from '../../typed-events/standard-schema.js';
import { consoleLogger, type Logger, withFields } from '../../util/logger.js';
import type { MetricSnapshot } from '../metrics/metrics-ledger.js';
import {
  type ChildMessage,
  type ChildSpec,
  type ConsumerChildSpec,
  HEALTH_INTERVAL_MS,
  isParentMessage,
  isRelaySpec,
} from '../protocol.js';
import type { ChildTracing } from '../tracing/child-tracing.js';
import { flushBeforeExit } from './exit-flush.js';
import { relayFromSpec } from './relay-from-spec.js';
import { subscribeOptionsFromSpec } from './subscribe-options-from-spec.js';

/** Sends a message; resolves once it was handed to the channel (or at once without one). */
function send(message: ChildMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected || process.send === undefined) {
      resolve();
      return;
    }
    process.send(message, undefined, {}, () => {
      resolve();
    });
  });
}

/** Adds the consumer and pid to every line, as the supervisor's logs do. */
function childLogger(consumer: string): Logger {
  return withFields(consoleLogger(process.env.TXOUTBOX_LOG_LEVEL === 'info' ? 'info' : 'warn'), { consumer, pid: process.pid });
}

async function loadHandler(spec: ConsumerChildSpec): Promise<Handler> {
  const module = (await import(pathToFileURL(spec.handlerPath).href)) as Record<string, unknown>;
  const handler = module[spec.handlerExport];
  if (typeof handler !== 'function') {
    throw new Error(
      `${spec.handlerPath} has no function export ${JSON.stringify(spec.handlerExport)} (exports: ${Object.keys(module).join(', ') || 'none'})`,
    );
  }
  return handler as Handler;
}

/**
 * The Outbox's `schemas` when the config names a module for them: its export as it is, for the
 * Outbox to judge (InvalidOptionError naming `schemas["<queue>"]`). A module without that export
 * fails the child's start, as a handler module without its export does.
 */
async function loadSchemas(spec: ChildSpec): Promise<{ schemas?: Record<string, StandardSchemaV1> }> {
  if (spec.schemas === undefined) return {};
  const { path, export: name } = spec.schemas;
  const module = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  const schemas = module[name];
  if (typeof schemas !== 'object' || schemas === null || Array.isArray(schemas)) {
    throw new Error(
      `${path} has no object export ${JSON.stringify(name)} mapping queue names to body schemas (exports: ${Object.keys(module).join(', ') || 'none'}); fix the module or schemas.export in the config`,
    );
  }
  return { schemas: schemas as Record<string, StandardSchemaV1> };
}

/**
 * The OpenTelemetry setup when the spec asks for it. Its module is imported only then: it loads the
 * optional @opentelemetry/* peers, which a runner without `tracing:` must never need.
 */
async function startTracing(spec: ChildSpec, logger: Logger): Promise<ChildTracing | undefined> {
  if (spec.tracing === undefined) return undefined;
  const { startChildTracing } = await import('../tracing/child-tracing.js');
  return await startChildTracing(spec.tracing, logger);
}

async function run(spec: ChildSpec, processNumber: number | undefined): Promise<void> {
  const logger = childLogger(spec.consumer);
  const registry = new Registry();
  const metrics = { registry, prefix: spec.metricsPrefix, appName: spec.metricsPrefix };
  // The process number puts each process's gauges under a key of their own (StatsdTarget.process).
  const statsd =
    spec.statsd === null
      ? undefined
      : new StatsdClient(
          processNumber === undefined ? spec.statsd : { ...spec.statsd, process: processNumber },
          spec.consumer,
          logger,
        );
  const tracing = await startTracing(spec, logger);
  const schemas = await loadSchemas(spec);
  const outbox = new Outbox({
    ...schemas,
    // transactionPooling, preparedStatements, listen, notify, listenConnectionString: validated with the config.
    ...spec.connection,
    connectionString: spec.databaseUrl,
    poolSize: spec.poolSize,
    queryTimeoutMs: spec.queryTimeoutMs,
    table: spec.table,
    dlqTable: spec.dlqTable,
    gracefulTimeoutMs: spec.gracefulTimeoutMs,
    logger,
    // statsdRecorder: the relay's broker-side lines (confirmed/refused/failed, confirm time, lag).
    recorder: [prometheusRecorder(metrics), ...(statsd === undefined ? [] : [statsdRecorder(statsd)])],
    // Tracing first, as observability.md asks: a middleware outside it that threw after next()
    // would turn a delivery into a retry its span, already ended as acked, cannot see.
    middlewares: [
      ...(tracing === undefined ? [] : [tracing.middleware]),
      prometheusMiddleware({ ...metrics, logger }),
      ...(statsd === undefined ? [] : [statsdMiddleware(statsd, { logger })]),
    ],
  });
  const report = async (): Promise<void> => {
    await send({ type: 'metrics', snapshot: (await registry.getMetricsAsJSON()) as unknown as MetricSnapshot[] });
  };
  let flusher: NodeJS.Timeout | undefined = undefined; // set once running; drain may come first
  let health: NodeJS.Timeout | undefined = undefined;
  let draining = false;
  // One ping at a time: the next is scheduled once the last answered (a ping takes up to 5 s).
  const reportHealth = async (): Promise<void> => {
    const up = await outbox.ping();
    if (draining) return;
    await send({ type: 'health', up });
    health = setTimeout(() => {
      if (!draining) void reportHealth();
    }, HEALTH_INTERVAL_MS);
  };
  const drain = async (why: string): Promise<void> => {
    if (draining) return;
    draining = true;
    logger.info({ why }, 'draining');
    clearInterval(flusher);
    clearTimeout(health);
    await outbox.stop(); // within gracefulTimeoutMs + 1.5 s
    // The final counts (nothing handled goes uncounted), the statsd lines and the spans, side by
    // side and bounded together (exit-flush.ts).
    await flushBeforeExit([report, statsd && (() => statsd.flush()), tracing && (() => tracing.shutdown())]);
    process.exit(0);
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => void drain(signal));
  process.on('disconnect', () => void drain('supervisor channel closed'));
  process.on('message', (message) => {
    if (isParentMessage(message) && message.type === 'stop') void drain('stop requested');
  });
  // The supervisor may be gone already: its 'disconnect' came while this process was still loading
  // (the tracing peers above), before the listener existed, and the child would run on, an orphan.
  // drain() ends the process: nothing below runs.
  if (!process.connected) {
    await drain('supervisor channel closed before the consumer started');
    return;
  }

  if (isRelaySpec(spec)) {
    // The database before the relay: with a sink, ping() asks the broker too, and a broker that is
    // down must not keep the relay from starting (it is reported by `health` instead).
    if (!(await outbox.ping())) throw new Error('the database did not answer');
    relayFromSpec(outbox, spec);
  } else {
    const handler = await loadHandler(spec);
    outbox.subscribe(spec.queues, handler, { name: spec.consumer, ...subscribeOptionsFromSpec(spec.subscribe) });
    if (!(await outbox.ping())) throw new Error('the database did not answer');
  }
  outbox.start();
  await send({ type: 'consuming' });
  flusher = setInterval(() => void report().catch(() => undefined), spec.flushIntervalMs);
  // Health before ready, on the same ordered channel: a relay whose broker is down is never counted ready.
  await reportHealth();
  await send({ type: 'ready' });
  logger.info(isRelaySpec(spec) ? { queues: spec.queues, sink: spec.sink.type } : { queues: spec.queues }, 'consumer running');
}

// A SIGHUP is the supervisor's to act on (a config reload, which replaces the processes whose
// consumer changed); one sent to the runner's whole process group reaches this child too, and
// Node's default would end it at once, mid-handler. The supervisor's fork ignores it from the
// process's first module on (consumer-slot.ts IGNORE_SIGHUP); this covers a child started another way.
process.on('SIGHUP', () => undefined);

process.once('message', (message) => {
  if (!isParentMessage(message) || message.type !== 'start') return;
  run(message.spec, typeof message.process === 'number' ? message.process : undefined).catch(async (error: unknown) => {
    childLogger(message.spec.consumer).error({ err: errorMessage(error) }, 'consumer failed to start');
    await send({ type: 'fatal', message: errorMessage(error) });
    process.exit(1);
  });
});
