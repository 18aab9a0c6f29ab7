/**
 * W5's "seams on": the Prometheus recorder and middleware on one registry, plus OpenTelemetry
 * tracing through a BatchSpanProcessor into a counting exporter when src/opentelemetry exists (it is being written alongside
 * this harness; until it lands W5 runs with Prometheus only and says so).
 */
import { existsSync } from 'node:fs';

import { Registry } from 'prom-client';

import type { Middleware, Recorder } from '../../../src/index.js';
import { prometheusMiddleware, prometheusRecorder } from '../../../src/prometheus/index.js';

export interface Seams {
  readonly recorder: Recorder[];
  readonly middlewares: Middleware[];
  /** 'on', 'pending: …' (module absent) or 'failed: …' (present but could not be wired). */
  readonly openTelemetry: string;
  /** Spans the in-memory exporter holds (OTel on only). */
  spans(): number;
}

const OTEL_MODULE = new URL('../../../src/opentelemetry/index.ts', import.meta.url);

interface OtelTracing {
  readonly middleware: Middleware;
  spans(): number;
}

async function openTelemetryTracing(): Promise<OtelTracing | string> {
  if (!existsSync(OTEL_MODULE)) return 'pending: src/opentelemetry does not exist yet';
  try {
    const module = (await import(OTEL_MODULE.href)) as Record<string, unknown>;
    const tracingMiddleware = module.tracingMiddleware;
    if (typeof tracingMiddleware !== 'function') return 'pending: src/opentelemetry has no tracingMiddleware export yet';
    const { trace, context } = await import('@opentelemetry/api');
    const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks');
    const { BasicTracerProvider, BatchSpanProcessor } = await import('@opentelemetry/sdk-trace-base');
    // As in production: a BatchSpanProcessor (SimpleSpanProcessor exports span by span, on the hot
    // path) into an exporter that counts and drops, so 100,000 spans over W5's pairs are not kept
    // alive (an InMemorySpanExporter would retain every span and charge its GC to the seams).
    let exported = 0;
    const exporter = {
      export(spans: readonly unknown[], done: (result: { code: number }) => void): void {
        exported += spans.length;
        done({ code: 0 });
      },
      shutdown: () => Promise.resolve(),
    };
    const processor = new BatchSpanProcessor(exporter, {
      maxQueueSize: 65_536,
      maxExportBatchSize: 4096,
      scheduledDelayMillis: 200,
    });
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [processor] });
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(tracerProvider);
    const make = tracingMiddleware as (options?: object) => Middleware;
    let middleware: Middleware;
    try {
      middleware = make({ tracerProvider });
    } catch {
      middleware = make();
    }
    return {
      middleware,
      spans: () => {
        void processor.forceFlush();
        return exported;
      },
    };
  } catch (error) {
    return `failed: ${error instanceof Error ? error.message : String(error)}`;
  }
}

let tracing: Promise<OtelTracing | string> | undefined;

export async function seamsOn(): Promise<Seams> {
  tracing ??= openTelemetryTracing();
  const otel = await tracing;
  const registry = new Registry();
  const metrics = { registry, prefix: 'txoutbox' };
  const middlewares: Middleware[] = [];
  if (typeof otel !== 'string') middlewares.push(otel.middleware);
  middlewares.push(prometheusMiddleware(metrics));
  const spansAtStart = typeof otel === 'string' ? 0 : otel.spans();
  return {
    recorder: [prometheusRecorder(metrics)],
    middlewares,
    openTelemetry: typeof otel === 'string' ? otel : 'on (tracingMiddleware → BatchSpanProcessor → counting exporter)',
    spans: () => (typeof otel === 'string' ? 0 : otel.spans() - spansAtStart),
  };
}
