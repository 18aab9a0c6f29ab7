import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  type Baggage,
  context,
  diag,
  DiagLogLevel,
  metrics,
  propagation,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import {
  DataPointType,
  type HistogramMetricData,
  MeterProvider,
  type MetricData,
  MetricReader,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  type Sampler,
  SimpleSpanProcessor,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';

import { ConstantRetry, InvalidOptionError, type Middleware, NoRetry, type OutboxEvent } from '../../src/index.js';
import {
  INSTRUMENTATION_SCOPE,
  openTelemetryRecorder,
  OTEL_AGE_BUCKETS,
  OTEL_DURATION_BUCKETS,
  tracingMiddleware,
} from '../../src/opentelemetry/index.js';
import { prometheusMiddleware, renderMetrics } from '../../src/prometheus/index.js';
import { useTestDatabase } from '../support/database.js';
import { EventLog } from '../support/events.js';
import { useOpenTelemetryGlobals } from '../support/opentelemetry-globals.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted, remaining } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { inTransaction } from '../support/transaction.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);
const QUICK_RETRY = { retry: new ConstantRetry({ delayMs: 10, maxAttempts: 5 }) };

/** A failure with its own class: error.type must be the class name, never the message. */
class PaymentDeclined extends Error {}

useOpenTelemetryGlobals();

/** A tracer provider whose finished spans stay in memory. */
function tracing() {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const spans = (name?: string): ReadableSpan[] =>
    exporter.getFinishedSpans().filter((s) => name === undefined || s.name === name);
  return { provider, spans };
}

/** What a handler saw: the active span's context and the active baggage. */
interface Seen {
  readonly active: SpanContext | undefined;
  readonly baggage: Baggage | undefined;
  readonly body: unknown;
}

function seenInHandler(seen: Seen[]) {
  return (message: { body: unknown }) => {
    seen.push({ active: trace.getActiveSpan()?.spanContext(), baggage: propagation.getActiveBaggage(), body: message.body });
  };
}

/** A middleware after the tracing one, reporting the trace ids it finds in ctx. */
function traceIdProbe(ids: { publish: (string | undefined)[]; consume: (string | undefined)[] }): Middleware {
  return {
    name: 'probe',
    publish: async (ctx, next) => {
      await next();
      ids.publish.push(ctx.traceId);
    },
    consume: async (ctx, next) => {
      await next();
      ids.consume.push(ctx.traceId);
    },
  };
}

/** Runs `fn` inside an active `request` span carrying baggage, as an instrumented HTTP handler would. */
async function inRequest<T>(provider: BasicTracerProvider, fn: () => Promise<T>): Promise<{ request: Span; result: T }> {
  const request = provider.getTracer('app').startSpan('request');
  const baggage = propagation.createBaggage({ tenant: { value: 'acme' } });
  const ctx = propagation.setBaggage(trace.setSpan(context.active(), request), baggage);
  try {
    return { request, result: await context.with(ctx, fn) };
  } finally {
    request.end();
  }
}

function only(spans: ReadableSpan[], what: string): ReadableSpan {
  assert.equal(spans.length, 1, `one ${what} span (have ${spans.length})`);
  return spans[0]!;
}

describe('tracingMiddleware', () => {
  test('publish → process: one trace through the table, the span active in the handler, semconv attributes', async () => {
    const { provider, spans } = tracing();
    const ids = { publish: [] as (string | undefined)[], consume: [] as (string | undefined)[] };
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'o_trace', {
      middlewares: [tracingMiddleware({ tracerProvider: provider }), traceIdProbe(ids)],
    });
    const seen: Seen[] = [];
    outbox.subscribe('orders', seenInHandler(seen), { ...FAST_POLL, name: 'billing' });

    const { request, result: id } = await inRequest(provider, () =>
      inTransaction(db.pool, (c) => outbox.publish(c, 'orders', { total: 42 }, { correlationId: 'conv-1' })),
    );
    const [row] = await outbox.fetchUnprocessed({ queue: 'orders' });
    outbox.start();
    await log.waitFor('acked');
    await waitFor(() => spans('process orders').length === 1);

    const publish = only(spans('publish orders'), 'publish');
    const process = only(spans('process orders'), 'process');
    const requestContext = request.spanContext();
    assert.equal(publish.kind, SpanKind.PRODUCER);
    assert.equal(publish.spanContext().traceId, requestContext.traceId, "the publish span joins the caller's trace");
    assert.equal(publish.parentSpanContext?.spanId, requestContext.spanId);
    assert.equal(publish.instrumentationScope.name, INSTRUMENTATION_SCOPE);
    assert.deepEqual(publish.attributes, {
      'messaging.system': 'outbox',
      'messaging.operation.type': 'send',
      'messaging.operation.name': 'publish',
      'messaging.destination.name': 'orders',
      'messaging.message.body.size': Buffer.byteLength(JSON.stringify({ total: 42 })),
      'messaging.message.conversation_id': 'conv-1',
      'messaging.message.id': id,
      'messaging.outbox.inserted': 1,
    });
    assert.equal(publish.status.code, SpanStatusCode.UNSET);

    // The row carries the publish span's context and the request's baggage.
    const { traceId, spanId } = publish.spanContext();
    assert.equal(row?.headers.traceparent, `00-${traceId}-${spanId}-01`);
    assert.equal(row?.headers.baggage, 'tenant=acme');

    assert.equal(process.kind, SpanKind.CONSUMER);
    assert.equal(process.spanContext().traceId, traceId);
    assert.equal(process.parentSpanContext?.spanId, spanId);
    assert.equal(process.parentSpanContext?.isRemote, true, 'the parent came through the row, not the process');
    assert.deepEqual(process.attributes, {
      'messaging.system': 'outbox',
      'messaging.operation.type': 'process',
      'messaging.operation.name': 'process',
      'messaging.destination.name': 'orders',
      'messaging.message.id': id,
      'messaging.message.conversation_id': 'conv-1',
      'messaging.message.body.size': Buffer.byteLength(JSON.stringify({ total: 42 })),
      'messaging.outbox.subscriber': 'billing',
      'messaging.outbox.delivery_count': 1,
      'messaging.outbox.status': 'acked',
      'messaging.outbox.outcome': 'ack',
    });
    assert.equal(process.status.code, SpanStatusCode.UNSET);
    assert.deepEqual(process.links, []);

    const [inHandler] = seen;
    assert.deepEqual(inHandler?.active, process.spanContext(), 'the process span is active inside the handler');
    assert.equal(inHandler?.baggage?.getEntry('tenant')?.value, 'acme', 'baggage crosses the table too');
    assert.deepEqual(ids, { publish: [traceId], consume: [traceId] }, 'ctx.traceId is set for the metrics middleware');
  });

  test('one Outbox publishes, another (its own tracer provider) consumes: the trace still connects', async () => {
    const producer = tracing();
    const consumer = tracing();
    const { outbox: publisher } = await migratedOutbox(newOutbox, db.pool, 'o_two', {
      middlewares: [tracingMiddleware({ tracerProvider: producer.provider })],
    });
    const { outbox: worker, log } = await migratedOutbox(newOutbox, db.pool, 'o_two', {
      middlewares: [tracingMiddleware({ tracerProvider: consumer.provider })],
    });
    const seen: Seen[] = [];
    worker.subscribe('emails', seenInHandler(seen), FAST_POLL);
    worker.start();
    await inTransaction(db.pool, (c) => publisher.publish(c, 'emails', 'hello'));
    await log.waitFor('acked');
    await waitFor(() => consumer.spans().length === 1);

    const publish = only(producer.spans(), 'publish');
    const process = only(consumer.spans(), 'process');
    assert.equal(publish.name, 'publish emails');
    assert.equal(process.name, 'process emails');
    assert.equal(process.spanContext().traceId, publish.spanContext().traceId);
    assert.equal(process.parentSpanContext?.spanId, publish.spanContext().spanId);
    assert.equal(seen[0]?.active?.spanId, process.spanContext().spanId);
    assert.equal(producer.spans('process emails').length, 0, 'the publishing Outbox made no consumer span');
  });

  test("consumerSpanRelation 'link': a new trace linked to the publish span, still active in the handler", async () => {
    const { provider, spans } = tracing();
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'o_link', {
      middlewares: [tracingMiddleware({ tracerProvider: provider, consumerSpanRelation: 'link' })],
    });
    const seen: Seen[] = [];
    outbox.subscribe('reports', seenInHandler(seen), FAST_POLL);
    outbox.start();
    await inRequest(provider, () => publishCommitted(outbox, db.pool, 'reports', ['monthly']));
    await log.waitFor('acked');
    await waitFor(() => spans('process reports').length === 1);

    const publish = only(spans('publish reports'), 'publish');
    const process = only(spans('process reports'), 'process');
    assert.notEqual(process.spanContext().traceId, publish.spanContext().traceId, 'a trace of its own');
    assert.equal(process.parentSpanContext, undefined, 'a root span');
    assert.equal(process.links.length, 1);
    assert.equal(process.links[0]?.context.traceId, publish.spanContext().traceId);
    assert.equal(process.links[0]?.context.spanId, publish.spanContext().spanId);
    assert.equal(seen[0]?.active?.spanId, process.spanContext().spanId);
    assert.equal(seen[0]?.baggage?.getEntry('tenant')?.value, 'acme', 'baggage is kept in link mode');
  });

  test('a throwing handler: ERROR status, error.type and the retry decision; its redelivery is the same trace', async () => {
    const { provider, spans } = tracing();
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'o_retry', {
      middlewares: [tracingMiddleware({ tracerProvider: provider })],
    });
    outbox.subscribe(
      'payments',
      (message) => {
        if (message.deliveriesCount === 1) throw new PaymentDeclined('card 4242 declined');
      },
      { ...FAST_POLL, ...QUICK_RETRY },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'payments', [{ amount: 5 }]);
    await log.waitFor('acked');
    await waitFor(() => spans('process payments').length === 2);

    const publish = only(spans('publish payments'), 'publish');
    const [failed, retried] = spans('process payments');
    assert.equal(failed?.attributes['messaging.outbox.delivery_count'], 1);
    assert.equal(failed?.status.code, SpanStatusCode.ERROR);
    assert.equal(failed?.attributes['error.type'], 'PaymentDeclined');
    assert.equal(failed?.attributes['messaging.outbox.status'], 'error');
    assert.equal(failed?.attributes['messaging.outbox.outcome'], 'retry');
    assert.equal(failed?.attributes['messaging.outbox.retry.delay_ms'], 10);
    const exception = failed?.events.find((e) => e.name === 'exception');
    assert.equal(exception?.attributes?.['exception.type'], 'PaymentDeclined');
    assert.deepEqual(failed?.events.find((e) => e.name === 'messaging.outbox.retry')?.attributes, {
      'messaging.outbox.retry.delay_ms': 10,
    });

    assert.equal(retried?.attributes['messaging.outbox.delivery_count'], 2);
    assert.equal(retried?.status.code, SpanStatusCode.UNSET);
    assert.equal(retried?.attributes['error.type'], undefined);
    for (const span of [failed, retried]) {
      assert.equal(span?.parentSpanContext?.spanId, publish.spanContext().spanId, 'every delivery is a child of the publish');
    }
  });

  test("a failure's text in the span is bounded, and renderError decides what of it is exported", async () => {
    // Review finding: the message and stack went into every retry's span whole (a poison message
    // quoting a 5 MB response), and what the Outbox's renderError kept out of the DLQ was exported.
    const huge = `secret-token ${'x'.repeat(100_000)}`;
    const runs = async (table: string, options: Parameters<typeof tracingMiddleware>[0]) => {
      const { provider, spans } = tracing();
      const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table, {
        middlewares: [tracingMiddleware({ tracerProvider: provider, ...options })],
      });
      outbox.subscribe(
        'leaky',
        () => {
          throw new PaymentDeclined(huge);
        },
        { ...FAST_POLL, retry: new NoRetry() },
      );
      outbox.start();
      await publishCommitted(outbox, db.pool, 'leaky', [{ n: 1 }]);
      await log.waitFor('dlq_written');
      await waitFor(() => spans('process leaky').length === 1);
      await outbox.stop();
      const [span] = spans('process leaky');
      return { span, exception: span?.events.find((e) => e.name === 'exception')?.attributes };
    };
    const plain = await runs('o_err_plain', {});
    assert.ok((plain.span?.status.message ?? '').length <= 8192);
    assert.match(plain.span?.status.message ?? '', /^secret-token x+…\[truncated\]$/);
    assert.ok(String(plain.exception?.['exception.stacktrace']).length <= 8192);
    const redacted = await runs('o_err_redacted', { renderError: (error) => `redacted ${(error as Error).constructor.name}` });
    assert.equal(redacted.span?.status.message, 'redacted PaymentDeclined');
    assert.equal(redacted.exception?.['exception.message'], 'redacted PaymentDeclined');
    assert.equal(redacted.exception?.['exception.stacktrace'], undefined);
    const none = await runs('o_err_none', { renderError: () => null });
    assert.equal(none.span?.status.code, SpanStatusCode.ERROR);
    assert.equal(none.span?.status.message, undefined);
    assert.equal(none.exception?.['exception.type'], 'PaymentDeclined');
    assert.equal(none.exception?.['exception.message'], undefined);
  });

  test('terminal decisions: retry_terminal (an ERROR span) and rejected (a decision, not an error)', async () => {
    const { provider, spans } = tracing();
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'o_terminal', {
      middlewares: [tracingMiddleware({ tracerProvider: provider })],
    });
    outbox.subscribe<string>(
      ['throws', 'rejects'],
      (message, ctx) => {
        if (message.body === 'reject') ctx.reject('bad order');
        else throw new PaymentDeclined('no');
      },
      { ...FAST_POLL, retry: new NoRetry() },
    );
    outbox.start();
    await publishCommitted(outbox, db.pool, 'throws', ['throw']);
    await publishCommitted(outbox, db.pool, 'rejects', ['reject']);
    await log.waitFor('nacked_terminal', 2);
    await waitFor(() => spans().filter((s) => s.kind === SpanKind.CONSUMER).length === 2);

    const thrown = only(spans('process throws'), 'process throws');
    assert.equal(thrown.status.code, SpanStatusCode.ERROR);
    assert.equal(thrown.attributes['error.type'], 'PaymentDeclined');
    assert.equal(thrown.attributes['messaging.outbox.outcome'], 'terminal');
    assert.equal(thrown.attributes['messaging.outbox.terminal.reason'], 'retry_terminal');
    assert.deepEqual(thrown.events.find((e) => e.name === 'messaging.outbox.terminal')?.attributes, {
      'messaging.outbox.terminal.reason': 'retry_terminal',
    });

    const rejected = only(spans('process rejects'), 'process rejects');
    assert.equal(rejected.status.code, SpanStatusCode.UNSET);
    assert.equal(rejected.attributes['messaging.outbox.status'], 'rejected');
    assert.equal(rejected.attributes['messaging.outbox.outcome'], 'terminal');
    assert.equal(rejected.attributes['messaging.outbox.terminal.reason'], 'rejected');
    assert.equal(rejected.attributes['error.type'], undefined);
  });

  test('a batch is one publish span with its message count; every row carries it; a failed publish is an ERROR span', async () => {
    const { provider, spans } = tracing();
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'o_batch', {
      middlewares: [tracingMiddleware({ tracerProvider: provider })],
    });
    outbox.subscribe('bulk', () => undefined, { ...FAST_POLL, concurrency: 3 });
    await publishCommitted(outbox, db.pool, 'bulk', ['a', 'b', 'c']);
    const rows = await outbox.fetchUnprocessed({ queue: 'bulk' });
    outbox.start();
    await log.waitFor('acked', 3);
    await waitFor(() => spans('process bulk').length === 3);

    const publish = only(spans('publish bulk'), 'publish');
    assert.equal(publish.attributes['messaging.batch.message_count'], 3);
    assert.equal(publish.attributes['messaging.outbox.inserted'], 3);
    assert.equal(publish.attributes['messaging.message.body.size'], undefined, 'a batch has no single body size');
    assert.equal(publish.attributes['messaging.message.id'], undefined, 'nor a single message id');
    const { traceId, spanId } = publish.spanContext();
    assert.deepEqual(
      rows.map((r) => r.headers.traceparent),
      Array.from({ length: 3 }, () => `00-${traceId}-${spanId}-01`),
    );
    for (const process of spans('process bulk')) assert.equal(process.parentSpanContext?.spanId, spanId);

    await assert.rejects(inTransaction(db.pool, (c) => outbox.publish(c, 'bulk', { n: 1n })));
    const failed = spans('publish bulk').at(-1);
    assert.equal(failed?.status.code, SpanStatusCode.ERROR);
    assert.equal(failed?.attributes['error.type'], 'UnencodableBodyError');
  });

  test('trace ids reach prometheusMiddleware as exemplars, in either order', async () => {
    const { provider, spans } = tracing();
    for (const [table, order] of [
      ['o_exemplar_outer', 'tracing first'],
      ['o_exemplar_inner', 'prometheus first'],
    ] as const) {
      const registry = new Registry();
      const tracer = tracingMiddleware({ tracerProvider: provider });
      const prometheus = prometheusMiddleware({ registry });
      const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table, {
        middlewares: order === 'tracing first' ? [tracer, prometheus] : [prometheus, tracer],
      });
      outbox.subscribe(table, () => undefined, { ...FAST_POLL, name: table });
      outbox.start();
      await publishCommitted(outbox, db.pool, table, ['x']);
      await log.waitFor('acked');
      await waitFor(() => spans(`process ${table}`).length === 1);
      const { traceId } = only(spans(`process ${table}`), 'process').spanContext();
      const text = await renderMetrics(registry, true);
      const exemplar = new RegExp(
        `^txoutbox_received_processed_messages_duration_seconds_bucket\\{[^}]*handler="${table}"\\} 1 # \\{trace_id="${traceId}"\\}`,
        'm',
      );
      assert.match(text, exemplar, order);
      await outbox.stop();
    }
  });

  test('by default the global tracer provider, even one registered after the middleware was made', async () => {
    const middleware = tracingMiddleware();
    const { outbox, log } = await migratedOutbox(newOutbox, db.pool, 'o_global', { middlewares: [middleware] });
    outbox.subscribe('q', () => undefined, FAST_POLL);
    outbox.start();
    // No SDK yet: no spans, no headers, delivery unaffected.
    await publishCommitted(outbox, db.pool, 'q', ['before']);
    await log.waitFor('acked');
    const { provider, spans } = tracing();
    trace.setGlobalTracerProvider(provider);
    try {
      await publishCommitted(outbox, db.pool, 'q', ['after']);
      await log.waitFor('acked', 2);
      await waitFor(() => spans('process q').length === 1);
      assert.equal(only(spans('publish q'), 'publish').spanContext().traceId, spans('process q')[0]?.spanContext().traceId);
    } finally {
      trace.disable();
    }
  });

  test('bad options are InvalidOptionErrors naming the option', () => {
    const cases: [unknown, string][] = [
      ['yes', 'options'],
      [{ tracerProvider: {} }, 'tracerProvider'],
      [{ tracerProvider: 'global' }, 'tracerProvider'],
      [{ consumerSpanRelation: 'child' }, 'consumerSpanRelation'],
      [{ tracer_provider: tracing().provider }, 'tracer_provider'],
    ];
    for (const [options, option] of cases) {
      assert.throws(
        () => tracingMiddleware(options as never),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
        option,
      );
    }
    assert.doesNotThrow(() => tracingMiddleware({}));
  });
});

type TracingFault = 'processor onStart' | 'processor onEnd' | 'sampler';

/**
 * A user's span processor that throws in onStart or onEnd, as a buggy one (or an exporter called
 * synchronously) does: the SDK calls processors synchronously from startSpan and span.end(), and
 * its MultiSpanProcessor catches nothing.
 */
class ThrowingProcessor implements SpanProcessor {
  thrown = 0;
  readonly #where: 'onStart' | 'onEnd';
  constructor(where: 'onStart' | 'onEnd') {
    this.#where = where;
  }
  onStart(): void {
    this.#fail('onStart');
  }
  onEnd(): void {
    this.#fail('onEnd');
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
  #fail(where: 'onStart' | 'onEnd'): void {
    if (where !== this.#where) return;
    this.thrown += 1;
    throw new Error(`span processor ${where} failed`);
  }
}

/** A tracer provider whose processor (after an exporting one) or sampler throws. */
function faultyTracing(fault: TracingFault) {
  const exporter = new InMemorySpanExporter();
  let thrown = 0;
  const throwing = new ThrowingProcessor(fault === 'processor onEnd' ? 'onEnd' : 'onStart');
  const sampler: Sampler = {
    shouldSample() {
      thrown += 1;
      throw new Error('sampler failed');
    },
    toString: () => 'ThrowingSampler',
  };
  const provider = new BasicTracerProvider({
    ...(fault === 'sampler' ? { sampler } : {}),
    spanProcessors: [new SimpleSpanProcessor(exporter), ...(fault === 'sampler' ? [] : [throwing])],
  });
  return { provider, exporter, thrown: () => thrown + throwing.thrown };
}

/** Collects what the OpenTelemetry diag logger is told, for the duration of `fn`. */
async function withDiag<T>(fn: (reported: string[]) => Promise<T>): Promise<T> {
  const reported: string[] = [];
  const report = (message: string) => void reported.push(message);
  diag.setLogger(
    { error: report, warn: report, info: report, debug: () => undefined, verbose: () => undefined },
    DiagLogLevel.INFO,
  );
  try {
    return await fn(reported);
  } finally {
    diag.disable();
  }
}

describe('tracingMiddleware with a failing tracing SDK', () => {
  for (const fault of ['processor onStart', 'processor onEnd', 'sampler'] as const) {
    const name = fault.replace(/\W/g, '_').toLowerCase();

    test(`a throwing ${fault}: publish() and publishBatch() resolve, their rows landed in the caller's transaction`, async () => {
      const { provider, exporter, thrown } = faultyTracing(fault);
      const table = `o_fault_pub_${name}`;
      const { outbox } = await migratedOutbox(newOutbox, db.pool, table, {
        middlewares: [tracingMiddleware({ tracerProvider: provider })],
      });
      await withDiag(async (reported) => {
        // The INSERT runs in the caller's transaction: a tracing failure after it must not fail the call.
        const id = await inTransaction(db.pool, (c) => outbox.publish(c, 'q', { n: 1 }));
        assert.equal(typeof id, 'string', 'publish() resolved with the row id');
        await inTransaction(db.pool, (c) => outbox.publishBatch(c, 'q', [{ n: 2 }, { n: 3 }]));
        assert.equal(await remaining(db.pool, 'q', table), 3, 'every row landed');
        assert.equal(thrown(), 2, 'the SDK threw at both calls');
        if (fault === 'processor onEnd') assert.equal(exporter.getFinishedSpans().length, 2, 'both spans were made and ended');
        else assert.deepEqual(exporter.getFinishedSpans(), [], 'no span could start');
        assert.deepEqual(
          reported
            .filter((message) => message.includes('tracingMiddleware'))
            .map((message) => /Error: (span processor|sampler)/.test(message)),
          [true],
          'reported once, with what threw',
        );
      });
    });

    for (const path of ['alone', 'inside a user middleware'] as const) {
      test(`a throwing ${fault}, tracing ${path}: every message runs once and is acked once`, async () => {
        const table = `o_fault_${name}_${path === 'alone' ? 'alone' : 'wrapped'}`;
        // Rows published with a healthy tracer: they carry a sampled trace context.
        const { outbox: publisher } = await migratedOutbox(newOutbox, db.pool, table, {
          middlewares: [tracingMiddleware({ tracerProvider: tracing().provider })],
        });
        await publishCommitted(publisher, db.pool, 'q', [{ n: 1 }, { n: 2 }, { n: 3 }]);

        const { provider, exporter, thrown } = faultyTracing(fault);
        const user: Middleware = {
          name: 'user',
          consume: async (_ctx, next) => {
            await next();
          },
        };
        const tracer = tracingMiddleware({ tracerProvider: provider });
        const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table, {
          middlewares: path === 'alone' ? [tracer] : [user, tracer],
        });
        const runs: number[] = [];
        outbox.subscribe<{ n: number }>(
          'q',
          (message) => {
            runs.push(message.body.n);
          },
          { ...FAST_POLL, ...QUICK_RETRY },
        );
        await withDiag(async (reported) => {
          outbox.start();
          const outcomes = () => log.events.filter((e) => e.type === 'acked' || e.type.startsWith('nacked'));
          await waitFor(() => outcomes().length >= 3, { what: 'three outcomes' });
          await outbox.stop();
          assert.deepEqual(
            outcomes().map((e) => e.type),
            ['acked', 'acked', 'acked'],
            'acked on the first delivery, never retried',
          );
          assert.deepEqual(
            runs.sort((a, b) => a - b),
            [1, 2, 3],
            'each handler ran once',
          );
          assert.equal(await remaining(db.pool, 'q', table), 0);
          assert.equal(thrown(), 3, 'the SDK threw at every delivery');
          if (fault === 'processor onEnd') assert.equal(exporter.getFinishedSpans().length, 3, 'the spans were made and ended');
          else assert.deepEqual(exporter.getFinishedSpans(), [], 'no span could start');
          assert.deepEqual(
            reported
              .filter((message) => message.includes('tracingMiddleware'))
              .map((message) => /Error: (span processor|sampler)/.test(message)),
            [true],
            'reported once, with what threw',
          );
        });
      });
    }
  }
});

/** A pull reader: collect() on demand, as a Prometheus exporter does at scrape time. */
class TestReader extends MetricReader {
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

function meters() {
  const reader = new TestReader();
  const provider = new MeterProvider({ readers: [reader] });
  const collect = async (): Promise<Map<string, MetricData>> => {
    const { resourceMetrics } = await reader.collect();
    const scope = resourceMetrics.scopeMetrics.find((s) => s.scope.name === INSTRUMENTATION_SCOPE);
    return new Map((scope?.metrics ?? []).map((metric) => [metric.descriptor.name, metric]));
  };
  return { provider, collect };
}

function histogram(all: Map<string, MetricData>, name: string): HistogramMetricData {
  const metric = all.get(name);
  assert.equal(metric?.dataPointType, DataPointType.HISTOGRAM, name);
  return metric;
}

/** The sum of counter `name` over the data points whose attributes include `where`. */
function total(all: Map<string, MetricData>, name: string, where: Record<string, string> = {}): number {
  const metric = all.get(name);
  assert.equal(metric?.dataPointType, DataPointType.SUM, name);
  return metric.dataPoints
    .filter((point) => Object.entries(where).every(([key, value]) => point.attributes[key] === value))
    .reduce((sum, point) => sum + point.value, 0);
}

describe('openTelemetryRecorder', () => {
  test('semconv instruments in seconds with explicit bucket advice, driven by a real Outbox', async () => {
    const { provider, collect } = meters();
    const log = new EventLog();
    const { outbox } = await migratedOutbox(newOutbox, db.pool, 'o_meter', {
      recorder: [log.recorder, openTelemetryRecorder({ meterProvider: provider })],
    });
    outbox.subscribe<string>(
      'invoices',
      (message, ctx) => {
        if (message.body === 'throw' && message.deliveriesCount === 1) throw new PaymentDeclined('secret detail 123');
        if (message.body === 'reject') ctx.reject('bad invoice');
      },
      { ...FAST_POLL, ...QUICK_RETRY, name: 'invoicing' },
    );
    outbox.start();
    const ids = [
      ...(await publishCommitted(outbox, db.pool, 'invoices', ['ok', 'throw'])),
      await inTransaction(db.pool, (c) => outbox.publish(c, 'invoices', 'reject', { correlationId: 'conv-secret' })),
    ];
    await log.waitFor('acked', 2);
    await log.waitFor('nacked_terminal');
    const all = await collect();

    for (const name of ['messaging.client.operation.duration', 'messaging.process.duration']) {
      const metric = histogram(all, name);
      assert.equal(metric.descriptor.unit, 's', name);
      for (const point of metric.dataPoints) assert.deepEqual(point.value.buckets.boundaries, OTEL_DURATION_BUCKETS, name);
    }
    assert.deepEqual(OTEL_DURATION_BUCKETS, [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]);
    const age = histogram(all, 'messaging.outbox.message.age');
    assert.equal(age.descriptor.unit, 's');
    assert.deepEqual(age.dataPoints[0]?.value.buckets.boundaries, OTEL_AGE_BUCKETS);
    assert.equal(
      age.dataPoints.reduce((n, p) => n + p.value.count, 0),
      4,
      'one age sample per dispatch',
    );

    const publishes = histogram(all, 'messaging.client.operation.duration').dataPoints;
    assert.equal(
      publishes.reduce((n, p) => n + p.value.count, 0),
      2,
      'one sample per publish call',
    );
    assert.deepEqual(publishes[0]?.attributes, {
      'messaging.system': 'outbox',
      'messaging.destination.name': 'invoices',
      'messaging.operation.type': 'send',
      'messaging.operation.name': 'publish',
    });
    assert.equal(total(all, 'messaging.client.sent.messages'), 3);
    assert.equal(total(all, 'messaging.client.consumed.messages', { 'messaging.operation.type': 'receive' }), 4);

    const processed = histogram(all, 'messaging.process.duration').dataPoints;
    const byOutcome = (outcome: string) =>
      processed.filter((p) => p.attributes['messaging.outbox.outcome'] === outcome).reduce((n, p) => n + p.value.count, 0);
    assert.deepEqual([byOutcome('ack'), byOutcome('retry'), byOutcome('terminal')], [2, 1, 1]);
    const retry = processed.find((p) => p.attributes['messaging.outbox.outcome'] === 'retry');
    assert.deepEqual(retry?.attributes, {
      'messaging.system': 'outbox',
      'messaging.destination.name': 'invoices',
      'messaging.outbox.subscriber': 'invoicing',
      'messaging.operation.type': 'process',
      'messaging.operation.name': 'process',
      'messaging.outbox.outcome': 'retry',
      'error.type': 'PaymentDeclined',
    });
    assert.equal(total(all, 'messaging.outbox.retries', { 'error.type': 'PaymentDeclined' }), 1);
    assert.equal(total(all, 'messaging.outbox.terminal', { 'messaging.outbox.terminal.reason': 'rejected' }), 1);
    assert.equal(total(all, 'messaging.outbox.fetches', { 'messaging.outbox.fetch.non_empty': 'true' }) >= 1, true);

    // Bounded attributes only: no row id, correlation id or error message anywhere.
    const values = [...all.values()].flatMap((metric) =>
      metric.dataPoints.flatMap((point) => Object.values(point.attributes).map(String)),
    );
    for (const unbounded of [...ids.map(String), 'conv-secret', 'secret detail 123', 'bad invoice']) {
      assert.ok(!values.some((value) => value.includes(unbounded)), `no attribute holds ${unbounded}`);
    }
  });

  test('recorder-only events: fetches, lost leases, terminal reasons, DLQ writes, drain timeouts', async () => {
    const { provider, collect } = meters();
    const record = openTelemetryRecorder({ meterProvider: provider });
    const scope = { queue: 'q', subscriber: 's', messageId: '17', deliveriesCount: 3 };
    const events: OutboxEvent[] = [
      { type: 'fetched', queue: 'q', subscriber: 's', count: 0 },
      { type: 'fetched', queue: 'q', subscriber: 's', count: 2 },
      { type: 'lease_lost', ...scope, phase: 'retry' },
      { type: 'lease_lost', ...scope, phase: 'terminal' },
      { type: 'nacked_terminal', ...scope, reason: 'max_deliveries' },
      { type: 'dlq_written', ...scope, failureReason: 'max_deliveries' },
      { type: 'drain_timeout', subscriber: 's', queues: ['q', 'r'], inFlight: 2, timeoutSeconds: 5 },
      { type: 'dispatched', ...scope, sizeBytes: 3, ageSeconds: Number.NaN },
      {
        type: 'published',
        queue: 'q',
        status: 'error',
        count: 0,
        messageCount: 3,
        sizeBytes: 0,
        durationSeconds: 0.2,
        exceptionType: 'DatabaseError',
      },
    ];
    for (const event of events) record(event);
    record({ type: 'something_new' } as unknown as OutboxEvent); // a later version's event: ignored
    const all = await collect();

    assert.equal(total(all, 'messaging.outbox.fetches'), 2);
    assert.equal(total(all, 'messaging.outbox.fetches', { 'messaging.outbox.fetch.non_empty': 'false' }), 1);
    assert.equal(total(all, 'messaging.client.consumed.messages'), 2);
    assert.equal(total(all, 'messaging.outbox.lease_lost', { 'messaging.outbox.lease.phase': 'retry' }), 1);
    assert.equal(total(all, 'messaging.outbox.lease_lost', { 'messaging.outbox.lease.phase': 'terminal' }), 1);
    assert.equal(total(all, 'messaging.outbox.terminal', { 'messaging.outbox.terminal.reason': 'max_deliveries' }), 1);
    assert.equal(all.get('messaging.process.duration'), undefined, 'max_deliveries ran no handler: no duration');
    assert.equal(total(all, 'messaging.outbox.dlq_written', { 'messaging.outbox.terminal.reason': 'max_deliveries' }), 1);
    assert.equal(total(all, 'messaging.outbox.drain_timeouts', { 'messaging.outbox.subscriber': 's' }), 1);
    assert.equal(all.get('messaging.outbox.message.age'), undefined, 'a NaN age is not recorded');
    // The convention counts messages attempted: a failed batch's 3, with its error.type.
    assert.equal(total(all, 'messaging.client.sent.messages', { 'error.type': 'DatabaseError' }), 3);
    const failed = histogram(all, 'messaging.client.operation.duration').dataPoints[0];
    assert.equal(failed?.attributes['error.type'], 'DatabaseError');
  });

  test('by default the global meter provider; bad options are InvalidOptionErrors naming the option', async () => {
    const { provider, collect } = meters();
    metrics.setGlobalMeterProvider(provider);
    try {
      openTelemetryRecorder()({ type: 'fetched', queue: 'q', subscriber: 's', count: 1 });
      assert.equal(total(await collect(), 'messaging.outbox.fetches'), 1);
    } finally {
      metrics.disable();
    }
    const cases: [unknown, string][] = [
      [42, 'options'],
      [{ meterProvider: {} }, 'meterProvider'],
      [{ meterProvider: null }, 'meterProvider'],
      [{ meter: provider.getMeter('x') }, 'meter'],
    ];
    for (const [options, option] of cases) {
      assert.throws(
        () => openTelemetryRecorder(options as never),
        (error: unknown) => error instanceof InvalidOptionError && error.option === option,
        option,
      );
    }
  });
});

describe('openTelemetryRecorder made before the SDK registers its meter provider', () => {
  test('a recorder made first (a module-level new Outbox, ESM import hoisting) exports once a provider is registered', async () => {
    metrics.disable(); // no global provider: the API's no-op one, as before sdk.start()
    const record = openTelemetryRecorder();
    record({ type: 'fetched', queue: 'q', subscriber: 's', count: 5 }); // nothing to record into yet
    const first = meters();
    metrics.setGlobalMeterProvider(first.provider);
    try {
      record({ type: 'fetched', queue: 'q', subscriber: 's', count: 1 });
      const all = await first.collect();
      assert.equal(total(all, 'messaging.outbox.fetches'), 1, 'the event after registration, not the one before');
      assert.equal(total(all, 'messaging.client.consumed.messages'), 1);
    } finally {
      metrics.disable();
    }
    // Resolved once: a provider registered later (after disable()) does not take the instruments over.
    const second = meters();
    metrics.setGlobalMeterProvider(second.provider);
    try {
      record({ type: 'fetched', queue: 'q', subscriber: 's', count: 1 });
      assert.equal(total(await first.collect(), 'messaging.outbox.fetches'), 2);
      assert.equal((await second.collect()).size, 0);
    } finally {
      metrics.disable();
    }
  });
});
