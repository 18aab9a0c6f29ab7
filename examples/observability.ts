// Both instrumentation seams on one Outbox and ONE prom-client registry, plus spans:
//   node --import tsx examples/observability.ts        (DATABASE_URL set)
// In an application the two subpath imports below are 'txoutbox/prometheus' and
// 'txoutbox/opentelemetry'; this example runs from the repository's sources.
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import pg from 'pg';
import { Registry } from 'prom-client';
import { Outbox } from 'txoutbox';

import { tracingMiddleware } from '../src/opentelemetry/index.js';
import { prometheusMiddleware, prometheusRecorder, queueStateCollector, serveMetrics } from '../src/prometheus/index.js';

// What an OpenTelemetry SDK setup does: a context manager (the span is active inside the handler),
// the W3C propagator (trace context travels through the row's headers), a tracer provider. Spans
// stay in memory here; an application exports them (OTLP) instead.
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(new W3CTraceContextPropagator());
const spans = new InMemorySpanExporter();
const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
trace.setGlobalTracerProvider(tracerProvider);

const QUEUE = 'order.created';
const MESSAGES = 3;
let acked = 0;

const registry = new Registry();
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
const outbox = new Outbox({
  pool,
  // tracing outermost, so no middleware outside it changes an outcome its span recorded; either way
  // the Prometheus duration samples get the span's trace id as an exemplar
  middlewares: [tracingMiddleware(), prometheusMiddleware({ registry })],
  // outbox-internal events (fetches, lost leases, terminal reasons, DLQ writes, age); names never
  // overlap the middleware's, so both share the registry without double counting
  recorder: [
    prometheusRecorder({ registry }),
    (event) => {
      if (event.type === 'acked') acked += 1; // a recorder must not block: count, don't call out
    },
  ],
});
await outbox.migrate();
queueStateCollector(outbox, { registry }); // depth and oldest-ready age, read at scrape time
const served = await serveMetrics({ registry, outbox, port: 0 }); // 127.0.0.1, a free port
console.log(`serving ${served.url}/metrics`);

outbox.subscribe<{ orderId: number }>(
  QUEUE,
  (message, ctx) => {
    const traceId = trace.getActiveSpan()?.spanContext().traceId; // the process span is active here
    ctx.stats.incr('emails_sent'); // → txoutbox_custom_emails_sent_total
    console.log(`handled order ${message.body.orderId} in trace ${traceId ?? 'none'}`);
  },
  { name: 'send-email' },
);
outbox.start();

// The request's span, as an instrumented HTTP server would have it: the publishes become its children.
const request = tracerProvider.getTracer('shop').startSpan('POST /orders');
await context.with(trace.setSpan(context.active(), request), async () => {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    for (let orderId = 1; orderId <= MESSAGES; orderId += 1) await outbox.publish(client, QUEUE, { orderId });
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
});
request.end();
console.log(`published ${MESSAGES} messages in trace ${request.spanContext().traceId}`);

// `acked` is the recorder's: the coalesced DELETE returned the rows.
const deadline = Date.now() + 15_000;
while (acked < MESSAGES) {
  if (Date.now() > deadline) throw new Error(`only ${acked} of ${MESSAGES} messages acked within 15 s`);
  await new Promise((resolve) => setTimeout(resolve, 20));
}

const finished = spans.getFinishedSpans();
const names = [...new Set(finished.map((span) => span.name))].sort();
const traces = new Set(finished.map((span) => span.spanContext().traceId));
console.log(`spans: ${names.join(', ')}; ${finished.length} spans in ${traces.size} trace(s)`);

// One scrape, as Prometheus would do it; a few of its lines.
const exposition = await (await fetch(`${served.url}/metrics`)).text();
const shown = [
  'txoutbox_published_messages_total{',
  'txoutbox_received_processed_messages_total{',
  'txoutbox_outbox_fetched_messages_total{',
  'txoutbox_queue_messages{',
  'txoutbox_queue_oldest_ready_age_seconds{',
  'txoutbox_custom_emails_sent_total{',
];
for (const line of exposition.split('\n')) if (shown.some((name) => line.startsWith(name))) console.log(line);

await served.close();
await outbox.stop(); // drains the subscriber; never closes a pool you passed in
await pool.end();
await tracerProvider.shutdown();
context.disable();
