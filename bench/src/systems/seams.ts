/**
 * W5's "seams on": the Prometheus recorder and middleware on one registry, plus OpenTelemetry
 * tracing into an in-memory exporter when src/opentelemetry exists (it is being written alongside
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
    const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = await import('@opentelemetry/sdk-trace-base');
    const exporter = new InMemorySpanExporter();
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    trace.setGlobalTracerProvider(tracerProvider);
    const make = tracingMiddleware as (options?: object) => Middleware;
    let middleware: Middleware;
    try {
      middleware = make({ tracerProvider });
    } catch {
      middleware = make();
    }
    return { middleware, spans: () => exporter.getFinishedSpans().length };
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
    openTelemetry: typeof otel === 'string' ? otel : 'on (tracingMiddleware → InMemorySpanExporter)',
    spans: () => (typeof otel === 'string' ? 0 : otel.spans() - spansAtStart),
  };
}
