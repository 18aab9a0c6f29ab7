/**
 * What the observability seams cost per delivery, without the database (issue 18: tracing ≤ 20 %
 * above the bare SDK, a dropping sampler ≤ 3 % and Prometheus ≤ 5 % over no seams). Each variant
 * runs the real delivery path — deliver(), the MiddlewareChain, the OutcomeWriter and its acker
 * (over a statement runner that answers at once), the recorders — for a synchronous no-op handler,
 * in batches of 100 as a claim hands them over, and reads process.cpuUsage() around it. Variants
 * are interleaved in every round, in a rotated order; figures are medians over rounds of each
 * variant's µs per delivery minus "off" of the same round, and the bytes each allocates per
 * delivery (a pass of its own after the rounds).
 *
 *   npm run bench:seams -- [rounds] [deliveries]        (default 7 rounds of 20,000)
 *
 * Variants: off · prometheus (recorder + middleware on one registry) · tracing (tracingMiddleware,
 * BatchSpanProcessor into a counting exporter) · dropped (tracingMiddleware, a parent-based ratio-0
 * sampler, rows carrying a not-sampled traceparent) · both (tracing + Prometheus) · floor (W5's
 * bare SDK floor: a hand-written middleware that starts a span, makes it active around the rest
 * with context.with and ends it) · sdk (the same SDK work with no middleware at all: the handler
 * starts and ends the span around a context.with of its own) · empty observer (one consume observer
 * that does nothing: the observer path's own cost) · Prometheus's middleware alone and its recorder
 * alone (what each half of the Prometheus seams costs) · dropped with `skipUnsampledParents: true` (no
 * span made for a not-sampled row). Rows carry a W3C traceparent
 * (sampled, or not for `dropped`), as rows published under a tracer do.
 *
 * SEAMS_BASELINE=<dir>: a src/ tree of another commit inside this repository (so it resolves the
 * same node_modules), e.g. `git archive main src | tar -x -C .seams-baseline`; its prometheus,
 * tracing, dropped and both variants run as `base …` in the same rotation. SEAMS_VARIANTS=<regex>
 * keeps the matching variants. SEAMS_ALLOC_SITES=1 also prints where each variant's garbage is made.
 * SEAMS_HANDLER=async: the handler of every variant but `sdk` returns a resolved promise, as an async no-op does,
 * whose run goes through its promise, as most real handlers' do.
 */
import { Session } from 'node:inspector/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';

import type { Middleware, Recorder } from '../../../src/index.js';
import type * as ObserverModule from '../../../src/instrumentation/consume-observer.js';
import type * as OpenTelemetryModule from '../../../src/opentelemetry/index.js';
import type * as OutboxOptionsModule from '../../../src/outbox-options.js';
import type * as PrometheusModule from '../../../src/prometheus/index.js';
import type * as DeliverModule from '../../../src/subscriber/deliver.js';
import type * as SignalModule from '../../../src/subscriber/delivery-signal.js';
import type * as WriterModule from '../../../src/subscriber/outcome-writer.js';
import type * as SqlModule from '../../../src/subscriber/sql.js';
import type * as SubscribeOptionsModule from '../../../src/subscriber/subscription-options.js';
import { shortPath } from '../cpu-profile.js';
import { HeapMeter } from '../measure.js';
import { countingPipeline } from '../systems/seams.js';
import { firstDelivery } from './first-delivery.js';

const ROUNDS = Number(process.argv[2] ?? 7);
const DELIVERIES = Number(process.argv[3] ?? 20_000);
const BATCH = 100;
const only = new RegExp(process.env.SEAMS_VARIANTS ?? '.');

/** The internals one src/ tree provides (the same shapes in the baseline and here). */
interface Lib {
  deliver: typeof DeliverModule.deliver;
  DeliverySignal: typeof SignalModule.DeliverySignal;
  OutcomeWriter: typeof WriterModule.OutcomeWriter;
  buildSubscriberSql: typeof SqlModule.buildSubscriberSql;
  resolveOutboxOptions: typeof OutboxOptionsModule.resolveOutboxOptions;
  resolveSubscribeOptions: typeof SubscribeOptionsModule.resolveSubscribeOptions;
  prometheusMiddleware: typeof PrometheusModule.prometheusMiddleware;
  prometheusRecorder: typeof PrometheusModule.prometheusRecorder;
  tracingMiddleware: typeof OpenTelemetryModule.tracingMiddleware;
}

/** Imports `path` of the src/ tree at `root`, typed as this tree's module of that path. */
async function from<M>(root: string, path: string): Promise<M> {
  return (await import(pathToFileURL(resolve(root, path)).href)) as M;
}

async function load(root: string): Promise<Lib> {
  const [deliver, signal, writer, sql, outbox, subscribe, prometheus, otel] = await Promise.all([
    from<typeof DeliverModule>(root, 'subscriber/deliver.ts'),
    from<typeof SignalModule>(root, 'subscriber/delivery-signal.ts'),
    from<typeof WriterModule>(root, 'subscriber/outcome-writer.ts'),
    from<typeof SqlModule>(root, 'subscriber/sql.ts'),
    from<typeof OutboxOptionsModule>(root, 'outbox-options.ts'),
    from<typeof SubscribeOptionsModule>(root, 'subscriber/subscription-options.ts'),
    from<typeof PrometheusModule>(root, 'prometheus/index.ts'),
    from<typeof OpenTelemetryModule>(root, 'opentelemetry/index.ts'),
  ]);
  return {
    deliver: deliver.deliver,
    DeliverySignal: signal.DeliverySignal,
    OutcomeWriter: writer.OutcomeWriter,
    buildSubscriberSql: sql.buildSubscriberSql,
    resolveOutboxOptions: outbox.resolveOutboxOptions,
    resolveSubscribeOptions: subscribe.resolveSubscribeOptions,
    prometheusMiddleware: prometheus.prometheusMiddleware,
    prometheusRecorder: prometheus.prometheusRecorder,
    tracingMiddleware: otel.tracingMiddleware,
  };
}

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(
  new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
);

const sdk = { BasicTracerProvider, BatchSpanProcessor };
/** Exporting as W5 does (systems/seams.ts countingPipeline). */
const recording = countingPipeline(sdk);
const dropping = countingPipeline(sdk, new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(0) }));
const floorTracer = recording.provider.getTracer('bench-floor');

const floor: Middleware = {
  name: 'sdk-floor',
  async consume(_ctx, next) {
    const span = floorTracer.startSpan('process bench');
    try {
      await context.with(trace.setSpan(context.active(), span), next);
    } finally {
      span.end();
    }
  },
};

const SAMPLED = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const NOT_SAMPLED = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00';
const NOOP = (): undefined => undefined;
/** The handler of every variant but sdk: SEAMS_HANDLER=async makes it an async no-op. */
const HANDLER: () => undefined | Promise<void> = process.env.SEAMS_HANDLER === 'async' ? () => Promise.resolve() : NOOP;
const SDK_HANDLER = (): undefined => {
  const span = floorTracer.startSpan('process bench');
  try {
    context.with(trace.setSpan(context.active(), span), NOOP);
  } finally {
    span.end();
  }
  return undefined;
};

interface Variant {
  readonly name: string;
  /** One batch of deliveries; resolves when every outcome was written. */
  batch(ids: number): Promise<void>;
}

function variant(
  name: string,
  lib: Lib,
  seams: { middlewares?: Middleware[]; recorder?: Recorder[] },
  traceparent: string,
  handler: () => undefined | Promise<void> = HANDLER,
): Variant {
  const resolved = lib.resolveOutboxOptions({
    connectionString: 'postgres://bench@127.0.0.1:1/bench',
    logger: { debug: NOOP, info: NOOP, warn: NOOP, error: NOOP },
    ...seams,
  });
  const sql = lib.buildSubscriberSql(resolved.names);
  // Answers every statement at once: an ack batch deletes all its rows.
  const db = {
    run: (_statement: unknown, values: readonly unknown[]) => {
      const ids = String(values[0]).slice(1, -1).split(',');
      return Promise.resolve({ rows: ids.map((id) => ({ id, token: '' })), rowCount: ids.length });
    },
  };
  const writer = new lib.OutcomeWriter({
    db: db as never,
    sql,
    dlq: false,
    dlqTable: undefined,
    subscriber: 'bench',
    logger: resolved.logger,
    emit: resolved.emit,
    renderError: resolved.renderError,
    tally: { count: NOOP },
    keyFreed: NOOP,
  });
  const options = lib.resolveSubscribeOptions('bench.q', handler, { name: 'bench' }, false);
  const deps = {
    options,
    handler,
    writer,
    logger: resolved.logger,
    emit: resolved.emit,
    middlewares: resolved.middlewares,
    customStats: resolved.customStats,
  };
  const payload = Buffer.from('{"n":1}');
  const created = new Date();
  const headers = { 'content-type': 'application/json', 'correlation-id': 'c', traceparent };
  let next = 0;
  // Deliveries that did not end before deliver() returned: they report to `ends`.
  let pending = 0;
  let allEnded: (() => void) | undefined;
  let failure: unknown;
  const ends = {
    ended(): void {
      pending -= 1;
      if (pending === 0) allEnded?.();
    },
    failed(_lease: unknown, _signal: unknown, error: unknown): void {
      failure ??= error;
      this.ended();
    },
  };
  return {
    name,
    async batch(count) {
      const running: Promise<void>[] = [];
      for (let i = 0; i < count; i++) {
        next += 1;
        const lease = {
          record: firstDelivery(String(next), 'bench.q', payload, headers, created),
          token: '00000000-0000-4000-8000-000000000000',
          leasedAt: 0,
        };
        const returned: unknown = lib.deliver(lease, new lib.DeliverySignal(), () => false, deps, ends);
        // A baseline tree from before round nineteen returns its delivery's promise (or undefined).
        if (returned instanceof Promise) running.push(returned as Promise<void>);
        else if (returned === false) pending += 1;
      }
      if (running.length > 0) await Promise.all(running);
      if (pending > 0)
        await new Promise<void>((ended) => {
          allEnded = ended;
        });
      if (failure !== undefined) throw failure instanceof Error ? failure : new Error('a delivery failed outside its handler');
      await writer.drainAcks();
    },
  };
}

function seamsOf(lib: Lib, kind: 'prometheus' | 'tracing' | 'dropped' | 'both') {
  const registry = new Registry();
  const prometheus = kind === 'prometheus' || kind === 'both';
  const middlewares: Middleware[] = [];
  if (kind !== 'prometheus')
    middlewares.push(lib.tracingMiddleware({ tracerProvider: (kind === 'dropped' ? dropping : recording).provider }));
  if (prometheus) middlewares.push(lib.prometheusMiddleware({ registry }));
  return { middlewares, ...(prometheus ? { recorder: [lib.prometheusRecorder({ registry })] } : {}) };
}

const lib = await load(resolve('src'));
const { observingMiddleware } = await from<typeof ObserverModule>('src', 'instrumentation/consume-observer.ts');
/** The observer path's own cost: one observer that does nothing. */
const emptyObserver = observingMiddleware({ start: NOOP, end: NOOP }, { name: 'empty' });
const baselineDir = process.env.SEAMS_BASELINE;
const base = baselineDir === undefined ? undefined : await load(resolve(baselineDir));

const variants: Variant[] = [
  variant('off', lib, {}, SAMPLED),
  variant('prometheus', lib, seamsOf(lib, 'prometheus'), SAMPLED),
  variant('tracing', lib, seamsOf(lib, 'tracing'), SAMPLED),
  variant('dropped', lib, seamsOf(lib, 'dropped'), NOT_SAMPLED),
  variant('both', lib, seamsOf(lib, 'both'), SAMPLED),
  variant('floor', lib, { middlewares: [floor] }, SAMPLED),
  variant('sdk', lib, {}, SAMPLED, SDK_HANDLER),
  variant('empty observer', lib, { middlewares: [emptyObserver] }, SAMPLED),
  variant('prometheus middleware', lib, { middlewares: [lib.prometheusMiddleware({ registry: new Registry() })] }, SAMPLED),
  variant('prometheus recorder', lib, { recorder: [lib.prometheusRecorder({ registry: new Registry() })] }, SAMPLED),
  variant(
    'dropped, skipUnsampledParents',
    lib,
    { middlewares: [lib.tracingMiddleware({ tracerProvider: dropping.provider, skipUnsampledParents: true })] },
    NOT_SAMPLED,
  ),
  ...(base === undefined
    ? []
    : [
        variant('base off', base, {}, SAMPLED),
        variant('base prometheus', base, seamsOf(base, 'prometheus'), SAMPLED),
        variant('base tracing', base, seamsOf(base, 'tracing'), SAMPLED),
        variant('base dropped', base, seamsOf(base, 'dropped'), NOT_SAMPLED),
        variant('base both', base, seamsOf(base, 'both'), SAMPLED),
      ]),
].filter((v) => v.name === 'off' || only.test(v.name));

async function measure(v: Variant, deliveries: number): Promise<number> {
  const before = process.cpuUsage();
  for (let done = 0; done < deliveries; done += BATCH) await v.batch(Math.min(BATCH, deliveries - done));
  const used = process.cpuUsage(before);
  return (used.user + used.system) / deliveries;
}

/**
 * Bytes a variant allocates per delivery: the used heap's growth between collections (measure.ts
 * HeapMeter, V8's GC profiler), in a pass of its own after the timed rounds. In a real drain
 * garbage costs more per byte than here, where little else is alive (W5 reports both).
 */
async function allocated(v: Variant, deliveries: number): Promise<number> {
  const heap = HeapMeter.start();
  for (let done = 0; done < deliveries; done += BATCH) await v.batch(Math.min(BATCH, deliveries - done));
  return (heap?.stop()?.allocatedBytes ?? NaN) / deliveries;
}

/** A call frame of the sampling heap profiler's tree (node:inspector, HeapProfiler). */
interface SampledNode {
  readonly callFrame: { readonly functionName: string; readonly url: string };
  readonly selfSize: number;
  readonly children: readonly SampledNode[];
}

/**
 * SEAMS_ALLOC_SITES=1: where a variant's garbage is made, bytes per delivery by function (after
 * inlining: an inlined callee's objects count in its caller), from V8's sampling heap profiler
 * with the objects the collectors already freed included (a sample every 32 bytes on average).
 */
async function allocationSites(v: Variant, deliveries: number, top: number): Promise<void> {
  const session = new Session();
  session.connect();
  try {
    await session.post('HeapProfiler.startSampling', {
      samplingInterval: 32,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    } as never);
    for (let done = 0; done < deliveries; done += BATCH) await v.batch(Math.min(BATCH, deliveries - done));
    const { profile } = (await session.post('HeapProfiler.stopSampling')) as { profile: { head: SampledNode } };
    const sites = new Map<string, number>();
    const walk = (node: SampledNode): void => {
      const { functionName, url } = node.callFrame;
      const site = `${functionName || '(anonymous)'} ${shortPath(url)}`;
      if (node.selfSize > 0) sites.set(site, (sites.get(site) ?? 0) + node.selfSize);
      for (const child of node.children) walk(child);
    };
    walk(profile.head);
    console.log(`\n${v.name}: where the garbage is made, bytes per delivery`);
    for (const [site, size] of [...sites].sort((a, b) => b[1] - a[1]).slice(0, top))
      console.log(`${(size / deliveries).toFixed(0).padStart(6)}  ${site}`);
  } finally {
    session.disconnect();
  }
}

// Warm-up: every variant once, so each round compares optimized code.
for (const v of variants) await measure(v, Math.min(DELIVERIES, 5_000));

const samples = new Map<string, number[]>(variants.map((v) => [v.name, []]));
const above = new Map<string, number[]>(variants.map((v) => [v.name, []]));
for (let round = 0; round < ROUNDS; round++) {
  const order = variants.map((_, i) => variants[(i + round) % variants.length] as Variant);
  const perRound = new Map<string, number>();
  for (const v of order) {
    global.gc?.();
    perRound.set(v.name, await measure(v, DELIVERIES));
  }
  const off = perRound.get('off') as number;
  for (const [name, us] of perRound) {
    samples.get(name)?.push(us);
    above.get(name)?.push(us - off);
  }
  console.error(`round ${round + 1}/${ROUNDS}: ${[...perRound].map(([n, us]) => `${n} ${us.toFixed(2)}`).join(' · ')}`);
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
};
const offUs = median(samples.get('off') ?? []);
console.log(`\n${ROUNDS} rounds of ${DELIVERIES} deliveries; CPU µs per delivery, median (above off, paired median)`);
const bytes = new Map<string, number>();
for (const v of variants) {
  global.gc?.();
  bytes.set(v.name, await allocated(v, DELIVERIES));
}
console.log('| variant | µs per delivery | above off | of off | bytes allocated per delivery |');
console.log('| --- | ---: | ---: | ---: | ---: |');
for (const v of variants) {
  const a = median(above.get(v.name) ?? []);
  console.log(
    `| ${v.name} | ${median(samples.get(v.name) ?? []).toFixed(2)} | ${a.toFixed(2)} | ${((a / offUs) * 100).toFixed(0)} % | ${(bytes.get(v.name) ?? NaN).toFixed(0)} |`,
  );
}
if (process.env.SEAMS_ALLOC_SITES === '1') for (const v of variants) await allocationSites(v, DELIVERIES, 15);
const aboveOf = (name: string) => (above.has(name) ? median(above.get(name) ?? []) : undefined);
const tracing = aboveOf('tracing');
for (const ref of ['floor', 'sdk']) {
  const floorUs = aboveOf(ref);
  if (tracing !== undefined && floorUs !== undefined && floorUs > 0)
    console.log(`tracing above ${ref}: ${((tracing / floorUs - 1) * 100).toFixed(1)} % (${(tracing - floorUs).toFixed(2)} µs)`);
}
console.log(`spans exported: recording ${recording.exported()} (before the last flush), dropping ${dropping.exported()}`);
process.exit(0);
