/**
 * What single pieces of a `process` span cost, apart from the delivery path (issue 18, round five):
 * tight synchronous loops (yielding every 100 calls so the BatchSpanProcessor exports, as in
 * seams-cpu.ts), variants interleaved in a rotated order every round, each compared with its
 * reference in the same round (median of the per-round differences, and how many rounds it won).
 * For differences of a few hundred ns that the whole-path probe (`bench:seams`) cannot separate
 * from the noise of a shared machine.
 *
 *   SEAMS_BASELINE=<src dir> node --expose-gc --import tsx bench/src/probes/span-pieces.ts [rounds]
 *
 * Pairs: `extractFrom` of this tree vs the baseline's, alone and under a span the sampler drops or
 * records; and attribute strategies on a recorded span vs what tracingMiddleware does (the five
 * creation attributes in startSpan's options, the message's four in one setAttributes, the ack's
 * two in one more): one setAttribute call each, all nine in the options, none at all.
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import { type Attributes, context, propagation, SpanKind, trace, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';

import type * as ObserverModule from '../../../src/instrumentation/consume-observer.js';
import type { ConsumeResult } from '../../../src/instrumentation/middleware.js';
import type * as AttributesModule from '../../../src/opentelemetry/attributes.js';
import type * as OpenTelemetryModule from '../../../src/opentelemetry/index.js';
import type * as PropagationModule from '../../../src/opentelemetry/propagation.js';
import { countingPipeline } from '../systems/seams.js';

const ROUNDS = Number(process.argv[2] ?? 15);
const CALLS = 50_000;

async function from<M>(root: string, path: string): Promise<M> {
  return (await import(pathToFileURL(resolve(root, path)).href)) as M;
}

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(
  new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
);
const sdk = { BasicTracerProvider, BatchSpanProcessor };
// As this directory's @opentelemetry/api sees them (the bench has its own copy of the API).
const recorded: Tracer = countingPipeline(sdk).provider.getTracer('pieces');
const dropped: Tracer = countingPipeline(
  sdk,
  new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(0) }),
).provider.getTracer('pieces');

const now = await from<typeof PropagationModule>('src', 'opentelemetry/propagation.ts');
const { ATTR } = await from<typeof AttributesModule>('src', 'opentelemetry/attributes.ts');
const baselineDir = process.env.SEAMS_BASELINE;
const base =
  baselineDir === undefined ? undefined : await from<typeof PropagationModule>(baselineDir, 'opentelemetry/propagation.ts');

/**
 * tracingMiddleware's observer of the src/ tree at `root` (start, around a no-op, end with an ack),
 * as MiddlewareChain.observe calls it: the whole per-delivery cost of the middleware, nothing else.
 */
async function observerRun(root: string, tracer: 'recorded' | 'dropped'): Promise<() => void> {
  const otel = await from<typeof OpenTelemetryModule>(root, 'opentelemetry/index.ts');
  const { consumeObserverOf } = await from<typeof ObserverModule>(root, 'instrumentation/consume-observer.ts');
  const pipeline =
    tracer === 'recorded'
      ? countingPipeline(sdk)
      : countingPipeline(sdk, new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(0) }));
  const observer = consumeObserverOf(otel.tracingMiddleware({ tracerProvider: pipeline.provider }));
  if (observer === undefined) throw new Error('tracingMiddleware is not a consume observer');
  const headers = tracer === 'recorded' ? SAMPLED : NOT_SAMPLED;
  const acked: ConsumeResult = { status: 'acked', error: undefined, durationSeconds: 0.001, outcome: { kind: 'ack' } };
  return () => {
    const ctx = {
      subscriber: 'bench',
      queue: 'bench.q',
      messageId: String(++id),
      correlationId: 'c',
      headers,
      sizeBytes: 7,
      deliveriesCount: 1,
      createdAt: CREATED,
      traceId: undefined,
    };
    const state = observer.start(ctx);
    observer.around?.(state, NOOP);
    observer.end(state, ctx, acked, undefined);
  };
}

const row = (flags: string) => ({
  'content-type': 'application/json',
  'correlation-id': 'c',
  traceparent: `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-${flags}`,
});
const SAMPLED = row('01');
const NOT_SAMPLED = row('00');
const NOOP = (): undefined => undefined;
const CREATION: Attributes = {
  [ATTR.system]: 'outbox',
  [ATTR.operationType]: 'process',
  [ATTR.operationName]: 'process',
  [ATTR.destination]: 'bench.q',
  [ATTR.subscriber]: 'bench',
};
const OPTIONS = { kind: SpanKind.CONSUMER, attributes: CREATION };
const ACKED: Attributes = Object.freeze({ [ATTR.status]: 'acked', [ATTR.outcome]: 'ack' });
const parent = now.extractFrom(SAMPLED);
const CREATED = new Date();
let id = 0;

type Extract = typeof now.extractFrom;
const onSpan = (tracer: Tracer, extract: Extract, headers: Record<string, unknown>) => () => {
  const carried = extract(headers);
  const span = tracer.startSpan('process bench.q', OPTIONS, carried);
  context.with(trace.setSpan(carried, span), NOOP);
  span.end();
};

const asMiddleware = (): void => {
  const span = recorded.startSpan('process bench.q', OPTIONS, parent);
  span.setAttributes({
    [ATTR.messageId]: String(++id),
    [ATTR.conversationId]: 'c',
    [ATTR.bodySize]: 7,
    [ATTR.deliveryCount]: 1,
  });
  context.with(trace.setSpan(parent, span), NOOP);
  span.setAttributes(ACKED);
  span.end();
};
/** [variant, reference, one call]. A control repeats its reference: what a pair shows for no change at all. */
const pairs: [string, string, () => void][] = [
  ['attributes as tracingMiddleware sets them', '', asMiddleware],
  ['control: as tracingMiddleware, again', 'attributes as tracingMiddleware sets them', asMiddleware],
  [
    'attributes one setAttribute each',
    'attributes as tracingMiddleware sets them',
    () => {
      const span = recorded.startSpan('process bench.q', OPTIONS, parent);
      span.setAttribute(ATTR.messageId, String(++id));
      span.setAttribute(ATTR.conversationId, 'c');
      span.setAttribute(ATTR.bodySize, 7);
      span.setAttribute(ATTR.deliveryCount, 1);
      context.with(trace.setSpan(parent, span), NOOP);
      span.setAttribute(ATTR.status, 'acked');
      span.setAttribute(ATTR.outcome, 'ack');
      span.end();
    },
  ],
  [
    'attributes all nine in the options',
    'attributes as tracingMiddleware sets them',
    () => {
      const attributes: Attributes = {
        'messaging.system': 'outbox',
        'messaging.operation.type': 'process',
        'messaging.operation.name': 'process',
        'messaging.destination.name': 'bench.q',
        'messaging.outbox.subscriber': 'bench',
        'messaging.message.id': String(++id),
        'messaging.message.conversation_id': 'c',
        'messaging.message.body.size': 7,
        'messaging.outbox.delivery_count': 1,
      };
      const span = recorded.startSpan('process bench.q', { kind: SpanKind.CONSUMER, attributes }, parent);
      context.with(trace.setSpan(parent, span), NOOP);
      span.setAttributes(ACKED);
      span.end();
    },
  ],
  [
    'no attributes at all',
    'attributes as tracingMiddleware sets them',
    () => {
      const span = recorded.startSpan('process bench.q', { kind: SpanKind.CONSUMER }, parent);
      context.with(trace.setSpan(parent, span), NOOP);
      span.end();
    },
  ],
];
if (baselineDir !== undefined) {
  pairs.push(
    ['base tracingMiddleware, recorded', '', await observerRun(baselineDir, 'recorded')],
    [
      'control: base tracingMiddleware, recorded, again',
      'base tracingMiddleware, recorded',
      await observerRun(baselineDir, 'recorded'),
    ],
    ['tracingMiddleware, recorded', 'base tracingMiddleware, recorded', await observerRun('src', 'recorded')],
    ['base tracingMiddleware, dropped', '', await observerRun(baselineDir, 'dropped')],
    [
      'control: base tracingMiddleware, dropped, again',
      'base tracingMiddleware, dropped',
      await observerRun(baselineDir, 'dropped'),
    ],
    ['tracingMiddleware, dropped', 'base tracingMiddleware, dropped', await observerRun('src', 'dropped')],
  );
}
if (base !== undefined) {
  pairs.push(
    ['base extractFrom', '', () => base.extractFrom(NOT_SAMPLED)],
    ['extractFrom', 'base extractFrom', () => now.extractFrom(NOT_SAMPLED)],
    ['base extract + dropped span', '', onSpan(dropped, base.extractFrom, NOT_SAMPLED)],
    ['extract + dropped span', 'base extract + dropped span', onSpan(dropped, now.extractFrom, NOT_SAMPLED)],
    ['base extract + recorded span', '', onSpan(recorded, base.extractFrom, SAMPLED)],
    ['extract + recorded span', 'base extract + recorded span', onSpan(recorded, now.extractFrom, SAMPLED)],
  );
}

async function measure(call: () => void): Promise<number> {
  const before = process.cpuUsage();
  for (let done = 0; done < CALLS; done += 100) {
    for (let i = 0; i < 100; i++) call();
    await new Promise((resolved) => setImmediate(resolved));
  }
  const used = process.cpuUsage(before);
  return (used.user + used.system) / CALLS;
}

const samples = new Map<string, number[]>(pairs.map(([name]) => [name, []]));
for (let round = -1; round < ROUNDS; round++) {
  for (let i = 0; i < pairs.length; i++) {
    const [name, , call] = pairs[(i + Math.max(round, 0)) % pairs.length] as (typeof pairs)[number];
    global.gc?.();
    const us = await measure(call);
    if (round >= 0) samples.get(name)?.push(us);
  }
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};
console.log(`${ROUNDS} rounds of ${CALLS} calls; CPU µs per call (median), and against the reference in the same round`);
console.log('| variant | µs per call | − reference (median of rounds) | rounds below the reference |');
console.log('| --- | ---: | ---: | ---: |');
for (const [name, reference] of pairs) {
  const own = samples.get(name) ?? [];
  const ref = samples.get(reference);
  const diffs = ref === undefined ? [] : own.map((us, i) => us - (ref[i] as number));
  console.log(
    `| ${name} | ${median(own).toFixed(3)} | ${diffs.length === 0 ? '' : median(diffs).toFixed(3)} | ${diffs.length === 0 ? '' : `${diffs.filter((d) => d < 0).length}/${diffs.length}`} |`,
  );
}
process.exit(0);
