/**
 * W5's seam variants, from the compiled library: the Prometheus recorder and middleware on one
 * registry, OpenTelemetry tracing through a BatchSpanProcessor into a counting exporter, and the
 * references tracing is judged against (issue 18):
 *
 * - `on`: Prometheus + tracingMiddleware (the overall W5 figure);
 * - `prometheus`: the Prometheus seams alone;
 * - `tracing`: tracingMiddleware alone;
 * - `floor`: the bare SDK floor, a hand-written middleware that only starts a span, makes it
 *   active around the rest of the delivery (`context.with`) and ends it: what any tracing of
 *   every message costs with this SDK, whatever the library. Same provider and processor as
 *   `tracing`, so the difference is txoutbox's own work (headers, attributes, outcome);
 * - `tracing-dropped`: tracingMiddleware with a provider whose sampler drops every span
 *   (parent-based, ratio 0 at the root: what `OTEL_TRACES_SAMPLER=parentbased_traceidratio`
 *   with a low ratio does to most messages). It exports nothing, and must still propagate;
 * - `context`: no middleware, only the context manager registered and its AsyncLocalStorage
 *   enabled once: the promise hook Node 20 then runs for every promise of the process, which any
 *   traced variant pays and an application running the OpenTelemetry Node SDK pays anyway.
 */
import type { TracerProvider } from '@opentelemetry/api';
import type * as TraceSdkModule from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';

import type { Middleware, Recorder } from '../../../src/index.js';
import { loadOpentelemetry, txoutboxPrometheus } from '../library.js';
import type { SeamVariant } from './seam-variants.js';

export interface Seams {
  readonly recorder: Recorder[];
  readonly middlewares: Middleware[];
  /** 'on …', 'off …' (Prometheus only), or 'failed: …' when the OpenTelemetry SDK could not be wired (W5 then runs with Prometheus only and says so). */
  readonly openTelemetry: string;
  /** Spans each handler run must export: 1 when every span is recorded, 0 when the sampler drops them all. */
  readonly spansPerRun: number;
  /** Spans exported so far by this variant's processor, after flushing it; undefined when these seams do not trace. */
  spans(): Promise<number | undefined>;
  /** After the run: unregisters the context manager these seams registered (see activate). */
  close(): void;
}

/** One tracer provider, its BatchSpanProcessor and counting exporter. */
interface Pipeline {
  readonly tracerProvider: TracerProvider;
  spans(): Promise<number>;
}

interface OtelTracing {
  /** tracingMiddleware on the recording pipeline. */
  readonly middleware: Middleware;
  /** The bare SDK floor on the same pipeline. */
  readonly floor: Middleware;
  /** tracingMiddleware on a pipeline whose sampler drops every span. */
  readonly dropped: Middleware;
  readonly recording: Pipeline;
  readonly dropping: Pipeline;
  /**
   * Registers an AsyncLocalStorage context manager (and the W3C propagators) for one run; the
   * returned function unregisters them. Once an AsyncLocalStorage has run, Node 20 keeps a promise hook on until it is disabled,
   * and every promise in the process pays for it (~2.5× the cost of an await, measured), so a
   * manager left registered would slow every later "seams off" run and understate W5's overhead.
   */
  activate(): () => void;
  /** Runs one `context.with` with a new context, which enables the AsyncLocalStorage (and its promise hook). */
  enableStorage(): void;
}

async function openTelemetryTracing(): Promise<OtelTracing | string> {
  try {
    const { tracingMiddleware } = await loadOpentelemetry();
    const { context, createContextKey, propagation, ROOT_CONTEXT, trace } = await import('@opentelemetry/api');
    const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks');
    const { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } = await import('@opentelemetry/core');
    const { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler } =
      await import('@opentelemetry/sdk-trace-base');
    // The SDK is loaded here (an optional dependency of the bench); countingPipeline explains the shape.
    const pipeline = (sampler?: InstanceType<typeof ParentBasedSampler>): Pipeline => {
      const { provider, processor, exported } = countingPipeline({ BasicTracerProvider, BatchSpanProcessor }, sampler);
      return {
        tracerProvider: provider,
        spans: async () => {
          await processor.forceFlush();
          return exported();
        },
      };
    };
    const recording = pipeline();
    const dropping = pipeline(new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(0) }));
    const tracer = recording.tracerProvider.getTracer('bench-floor');
    const floor: Middleware = {
      name: 'sdk-floor',
      async consume(_ctx, next) {
        const span = tracer.startSpan('process bench');
        try {
          await context.with(trace.setSpan(context.active(), span), next);
        } finally {
          span.end();
        }
      },
    };
    return {
      middleware: tracingMiddleware({ tracerProvider: recording.tracerProvider }),
      floor,
      dropped: tracingMiddleware({ tracerProvider: dropping.tracerProvider }),
      recording,
      dropping,
      enableStorage: () => {
        context.with(ROOT_CONTEXT.setValue(createContextKey('bench'), true), () => undefined);
      },
      activate: () => {
        context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
        // The Node SDK's default propagators: rows carry `traceparent` (publish) and every
        // delivery parses it (consume), as in production; without them both are no-ops.
        propagation.setGlobalPropagator(
          new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
        );
        return () => {
          context.disable();
          propagation.disable();
        };
      },
    };
  } catch (error) {
    return `failed: ${error instanceof Error ? error.message : String(error)}`;
  }
}

let tracing: Promise<OtelTracing | string> | undefined;

const TRACING_ON = 'on (tracingMiddleware → BatchSpanProcessor → counting exporter)';

/** What W5's tracing is: TRACING_ON, or why the SDK could not be wired. Registers nothing. */
export async function openTelemetryStatus(): Promise<string> {
  const otel = await (tracing ??= openTelemetryTracing());
  return typeof otel === 'string' ? otel : TRACING_ON;
}

/**
 * The Prometheus seams' module: the compiled library's, or another build's (drain-cpu's baseline).
 * Only Prometheus comes from another build: its tracing variants would hand that build this
 * build's tracingMiddleware, which it would not know as an observer (consume-observer.ts), so
 * drain-cpu runs other builds with the Prometheus seams only.
 */
export type PrometheusLibrary = Pick<typeof txoutboxPrometheus, 'prometheusMiddleware' | 'prometheusRecorder'>;

/** The seams of one W5 variant (not 'off'). */

export async function seamsOf(
  variant: Exclude<SeamVariant, 'off'>,
  prometheus: PrometheusLibrary = txoutboxPrometheus,
): Promise<Seams> {
  const traced = variant !== 'prometheus';
  const otel = traced ? await (tracing ??= openTelemetryTracing()) : 'off (Prometheus seams only)';
  const withPrometheus = variant === 'on' || variant === 'prometheus';
  const middlewares: Middleware[] = [];
  const recorder: Recorder[] = [];
  let pipeline: Pipeline | undefined;
  // 'context' installs no middleware and exports nothing (see enableStorage).
  if (typeof otel !== 'string' && variant !== 'context') {
    const [middleware, spans] =
      variant === 'floor'
        ? [otel.floor, otel.recording]
        : variant === 'tracing-dropped'
          ? [otel.dropped, otel.dropping]
          : [otel.middleware, otel.recording];
    middlewares.push(middleware);
    pipeline = spans;
  }
  if (withPrometheus) {
    const metrics = { registry: new Registry(), prefix: 'txoutbox' };
    middlewares.push(prometheus.prometheusMiddleware(metrics));
    recorder.push(prometheus.prometheusRecorder(metrics));
  }
  const deactivate = typeof otel === 'string' ? () => undefined : otel.activate();
  if (variant === 'context' && typeof otel !== 'string') otel.enableStorage();
  return {
    close: deactivate,
    recorder,
    middlewares,
    openTelemetry: typeof otel === 'string' ? otel : TRACING_ON,
    spansPerRun: variant === 'tracing-dropped' ? 0 : 1,
    spans: async () => await pipeline?.spans(),
  };
}

type TraceSdk = typeof TraceSdkModule;

/**
 * As in production: a BatchSpanProcessor (SimpleSpanProcessor exports span by span, on the hot path)
 * into an exporter that counts and drops, so the spans of a long run are not kept alive (an
 * InMemorySpanExporter would retain every span and charge its GC to the seams). W5 and the seams
 * probe (probes/seams-cpu.ts) both measure through it.
 */
export function countingPipeline(
  sdk: Pick<TraceSdk, 'BasicTracerProvider' | 'BatchSpanProcessor'>,
  sampler?: InstanceType<TraceSdk['ParentBasedSampler']>,
): {
  provider: InstanceType<TraceSdk['BasicTracerProvider']>;
  processor: InstanceType<TraceSdk['BatchSpanProcessor']>;
  exported: () => number;
} {
  let exported = 0;
  const exporter = {
    export(spans: readonly unknown[], done: (result: { code: number }) => void): void {
      exported += spans.length;
      done({ code: 0 });
    },
    shutdown: () => Promise.resolve(),
  };
  const processor = new sdk.BatchSpanProcessor(exporter, {
    maxQueueSize: 65_536,
    maxExportBatchSize: 4096,
    scheduledDelayMillis: 200,
  });
  const provider = new sdk.BasicTracerProvider({ spanProcessors: [processor], ...(sampler === undefined ? {} : { sampler }) });
  return { provider, processor, exported: () => exported };
}
