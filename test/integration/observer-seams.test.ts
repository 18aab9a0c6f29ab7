/**
 * The consume observer path against the generic chain, end to end (instrumentation/
 * consume-observer.ts): the same deliveries (an ack, a nack, a throw, a reject into the DLQ)
 * through tracingMiddleware + prometheusMiddleware alone (observed: no onion chain) and with a
 * user middleware around them (the generic chain) export the same spans and the same Prometheus
 * series, and the user middleware still wraps every delivery with the span active inside it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';

import { ConstantRetry, type HandlerContext, type Message, type Middleware } from '../../src/index.js';
import { observingMiddleware } from '../../src/instrumentation/consume-observer.js';
import { MiddlewareChain } from '../../src/instrumentation/middleware-chain.js';
import { tracingMiddleware } from '../../src/opentelemetry/index.js';
import { prometheusMiddleware, prometheusRecorder } from '../../src/prometheus/index.js';
import { useTestDatabase } from '../support/database.js';
import { useOpenTelemetryGlobals } from '../support/opentelemetry-globals.js';
import { outboxFactory } from '../support/outboxes.js';
import { publishCommitted } from '../support/publish.js';
import { FAST_POLL, migratedOutbox } from '../support/subscriber-setup.js';
import { waitFor } from '../support/wait-for.js';

const db = useTestDatabase(import.meta.url);
const newOutbox = outboxFactory(db);

class PaymentDeclined extends Error {}

useOpenTelemetryGlobals();

/** Counts MiddlewareChain.observe calls: deliveries that took the observer path. */
let observeCalls = 0;
// eslint-disable-next-line @typescript-eslint/unbound-method -- put back as it was, on the prototype
const originalObserve = MiddlewareChain.prototype.observe;
before(() => {
  MiddlewareChain.prototype.observe = function (this: MiddlewareChain, ...args: Parameters<MiddlewareChain['observe']>) {
    observeCalls += 1;
    return originalObserve.apply(this, args);
  };
});
after(() => {
  MiddlewareChain.prototype.observe = originalObserve;
});

/** A span as the comparison sees it: what does not depend on ids, clocks or stacks. */
function shape(span: ReadableSpan): string {
  const varying = new Set(['messaging.message.id', 'messaging.message.conversation_id']);
  const attributes = Object.fromEntries(Object.entries(span.attributes).filter(([key]) => !varying.has(key)));
  return JSON.stringify({
    name: span.name,
    kind: span.kind,
    status: span.status,
    parented: span.parentSpanContext !== undefined,
    attributes: Object.fromEntries(Object.entries(attributes).sort(([a], [b]) => a.localeCompare(b))),
    events: span.events.map((event) => ({
      name: event.name,
      attributes: Object.fromEntries(Object.entries(event.attributes ?? {}).filter(([key]) => key !== 'exception.stacktrace')),
    })),
  });
}

/** The registry's series, durations reduced to their sample counts (the rest is clock), claims left out. */
async function series(registry: Registry): Promise<string[]> {
  const out: string[] = [];
  for (const metric of await registry.getMetricsAsJSON()) {
    // How many claims ran (empty ones included) depends on timing, not on the seams.
    if (metric.name.endsWith('_outbox_fetches_total')) continue;
    const timed = metric.name.endsWith('_duration_seconds') || metric.name.endsWith('_age_seconds');
    for (const value of metric.values) {
      const name = (value as { metricName?: string }).metricName ?? metric.name;
      if (timed && !name.endsWith('_count')) continue;
      out.push(`${name}${JSON.stringify(value.labels)} ${value.value}`);
    }
  }
  return out.sort();
}

interface Outcome {
  readonly spans: string[];
  readonly series: string[];
  readonly observed: number;
  readonly wrapped: number;
  readonly activeInHandler: boolean[];
}

/** Publishes the four kinds and drains them with `middlewares(tracing, prometheus)`. */
async function run(table: string, withUserMiddleware: boolean, asyncHandler = false): Promise<Outcome> {
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const registry = new Registry();
  let wrapped = 0;
  const user: Middleware = {
    name: 'user',
    consume: async (_ctx, next) => {
      wrapped += 1;
      await next();
    },
  };
  const ours = [tracingMiddleware({ tracerProvider }), prometheusMiddleware({ registry })];
  const { outbox } = await migratedOutbox(newOutbox, db.pool, table, {
    middlewares: withUserMiddleware ? [user, ...ours] : ours,
    recorder: [prometheusRecorder({ registry })],
  });
  const activeInHandler: boolean[] = [];
  const handle = (message: Message<{ kind: string }>, ctx: HandlerContext): void => {
    activeInHandler.push(trace.getActiveSpan()?.isRecording() === true);
    const first = message.attemptsCount === 0;
    if (message.body.kind === 'nack' && first) ctx.nack({ delayMs: 5 });
    if (message.body.kind === 'reject') ctx.reject('bad order');
    if (message.body.kind === 'throw' && first) throw new PaymentDeclined('declined');
  };
  outbox.subscribe<{ kind: string }>(
    'q',
    asyncHandler
      ? async (message, ctx) => {
          // After a turn of the event loop: the span must still be the active one.
          await new Promise((resolve) => setImmediate(resolve));
          handle(message, ctx);
        }
      : handle,
    { ...FAST_POLL, name: 'billing', retry: new ConstantRetry({ delayMs: 10, maxAttempts: 5 }) },
  );
  const before = observeCalls;
  outbox.start();
  // One at a time, so spans and series come in the same order in both runs.
  for (const kind of ['ack', 'nack', 'throw', 'reject']) await publishCommitted(outbox, db.pool, 'q', [{ kind }]);
  // 3 acks (ack, nack then ack, throw then ack) + 2 retries + 1 reject = 6 handler runs.
  await waitFor(() => exporter.getFinishedSpans().filter((s) => s.name === 'process q').length === 6, {
    what: 'six process spans',
  });
  await waitFor(async () => (await series(registry)).some((line) => line.includes('"status":"rejected"')), {
    what: 'the rejected run counted',
  });
  await waitFor(
    async () => (await series(registry)).some((line) => /processed_messages_total.*"status":"acked"\} 3$/.test(line)),
    {
      what: 'three acks counted',
    },
  );
  await outbox.stop();
  return {
    spans: exporter.getFinishedSpans().map(shape).sort(),
    series: await series(registry),
    observed: observeCalls - before,
    wrapped,
    activeInHandler,
  };
}

describe('consume observers and the generic chain', () => {
  test('tracing + Prometheus alone take the observer path; with a user middleware the generic one; same spans and series', async () => {
    const observed = await run('obs_direct', false);
    const generic = await run('obs_generic', true);

    assert.equal(observed.observed, 6, 'every handler run through MiddlewareChain.observe');
    assert.equal(observed.wrapped, 0);
    assert.equal(generic.observed, 0, 'a user middleware sends every delivery through the onion chain');
    assert.equal(generic.wrapped, 6, 'the user middleware wrapped every handler run');
    assert.deepEqual(observed.activeInHandler, [true, true, true, true, true, true], 'the process span is active in the handler');
    assert.deepEqual(generic.activeInHandler, observed.activeInHandler);

    assert.deepEqual(observed.spans, generic.spans);
    assert.deepEqual(observed.series, generic.series);

    // And they say what they should, not only the same thing.
    const process = observed.spans.filter((s) => s.includes('"name":"process q"'));
    assert.equal(process.filter((s) => s.includes('"error.type":"PaymentDeclined"')).length, 1);
    assert.equal(process.filter((s) => s.includes('"messaging.outbox.terminal.reason":"rejected"')).length, 1);
    const line = (pattern: RegExp) => observed.series.filter((l) => pattern.test(l));
    assert.equal(line(/received_processed_messages_total.*"status":"acked"\} 3$/).length, 1);
    assert.equal(line(/received_processed_messages_total.*"status":"nacked"\} 1$/).length, 1);
    assert.equal(line(/received_processed_messages_total.*"status":"error"\} 1$/).length, 1);
    assert.equal(line(/received_processed_messages_total.*"status":"rejected"\} 1$/).length, 1);
    assert.equal(line(/exceptions_total.*"exception_type":"PaymentDeclined"\} 1$/).length, 1);
    assert.equal(line(/received_messages_in_process.* 0$/).length, 1, 'the in-process gauge is back to 0');
    assert.equal(line(/outbox_terminal_total.*"reason":"rejected"\} 1$/).length, 1, "the recorder's series too");
  });

  test('an async handler: its run handed to the observers without a promise (LaterResult); same spans and series as the generic chain', async () => {
    const observed = await run('obs_async_direct', false, true);
    const generic = await run('obs_async_generic', true, true);
    assert.equal(observed.observed, 6);
    assert.equal(observed.wrapped, 0);
    assert.equal(generic.observed, 0);
    assert.equal(generic.wrapped, 6);
    assert.deepEqual(observed.activeInHandler, [true, true, true, true, true, true], 'the process span is active after an await');
    assert.deepEqual(observed.spans, generic.spans);
    assert.deepEqual(observed.series, generic.series);
    const sync = await run('obs_sync_direct', false);
    assert.deepEqual(observed.spans, sync.spans, 'as a synchronous handler');
    assert.deepEqual(observed.series, sync.series);
  });

  test('a failure outside prometheusMiddleware after an ack: processed counts the retry written, on both paths', async () => {
    class AuditFailed extends Error {}
    const fails = (deliveriesCount: number) => {
      if (deliveriesCount === 1) throw new AuditFailed('audit log unavailable');
    };
    // The observer path holds only txoutbox-built observers: one whose end throws stands in for it.
    const observing = observingMiddleware(
      {
        start: () => undefined,
        end: (_state, ctx) => {
          fails(ctx.deliveriesCount);
        },
      },
      { name: 'audit' },
    );
    const plain: Middleware = {
      name: 'audit',
      consume: async (ctx, next) => {
        await next();
        fails(ctx.deliveriesCount);
      },
    };
    const results: string[][] = [];
    for (const [table, outer] of [
      ['obs_outer_observed', observing],
      ['obs_outer_generic', plain],
    ] as const) {
      const registry = new Registry();
      const { outbox, log } = await migratedOutbox(newOutbox, db.pool, table, {
        middlewares: [outer, prometheusMiddleware({ registry })],
      });
      outbox.subscribe('q', () => undefined, { ...FAST_POLL, name: 'audited', retry: new ConstantRetry({ delayMs: 10 }) });
      const before = observeCalls;
      outbox.start();
      await publishCommitted(outbox, db.pool, 'q', [{ n: 1 }]);
      await log.waitFor('acked');
      const counted = async () =>
        (await series(registry))
          .filter((line) => line.includes('received_processed_messages_total'))
          .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
      await waitFor(async () => (await counted()) === 2, { what: 'both runs counted' });
      await outbox.stop();
      assert.equal(observeCalls - before, outer === observing ? 2 : 0, table);
      const processed = (await series(registry)).filter((line) => /processed_messages_(total|exceptions_total)/.test(line));
      assert.deepEqual(
        processed,
        [
          'txoutbox_received_processed_messages_exceptions_total{"app_name":"txoutbox","broker":"outbox","handler":"audited","exception_type":"AuditFailed"} 1',
          'txoutbox_received_processed_messages_total{"app_name":"txoutbox","broker":"outbox","handler":"audited","status":"acked"} 1',
          'txoutbox_received_processed_messages_total{"app_name":"txoutbox","broker":"outbox","handler":"audited","status":"error"} 1',
        ],
        `${table}: the first run wrote a retry (error), the redelivery an ack`,
      );
      results.push(await series(registry));
    }
    assert.deepEqual(results[0], results[1], 'the same series on both paths');
  });
});
