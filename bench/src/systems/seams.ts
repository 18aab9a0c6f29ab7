/**
 * W5's "seams on": the Prometheus recorder and middleware on one registry, plus OpenTelemetry
 * tracing through a BatchSpanProcessor into a counting exporter (both from the compiled library).
 */
import { Registry } from 'prom-client';

import type { Middleware, Recorder } from '../../../src/index.js';
import { loadOpentelemetry, txoutboxPrometheus } from '../library.js';

export interface Seams {
  readonly recorder: Recorder[];
  readonly middlewares: Middleware[];
  /** 'on …', 'off …' (Prometheus only), or 'failed: …' when the OpenTelemetry SDK could not be wired (W5 then runs with Prometheus only and says so). */
  readonly openTelemetry: string;
  /** Spans exported so far by the shared processor, after flushing it; undefined when these seams do not trace. */
  spans(): Promise<number | undefined>;
  /** After the run: unregisters the context manager these seams registered (see activate). */
  close(): void;
}

interface OtelTracing {
  readonly middleware: Middleware;
  spans(): Promise<number>;
  /**
   * Registers an AsyncLocalStorage context manager for one run; the returned function unregisters
   * it. Once an AsyncLocalStorage has run, Node 20 keeps a promise hook on until it is disabled,
   * and every promise in the process pays for it (~2.5× the cost of an await, measured), so a
   * manager left registered would slow every later "seams off" run and understate W5's overhead.
   */
  activate(): () => void;
}

async function openTelemetryTracing(): Promise<OtelTracing | string> {
  try {
    const { tracingMiddleware } = await loadOpentelemetry();
    const { context } = await import('@opentelemetry/api');
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
    const middleware = tracingMiddleware({ tracerProvider });
    return {
      middleware,
      activate: () => {
        context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
        return () => {
          context.disable();
        };
      },
      spans: async () => {
        await processor.forceFlush();
        return exported;
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

/** The seams W5 measures: Prometheus always, OpenTelemetry tracing unless `withTracing` is false. */
export async function seamsOn(withTracing = true): Promise<Seams> {
  const otel = withTracing ? await (tracing ??= openTelemetryTracing()) : 'off (Prometheus seams only)';
  const registry = new Registry();
  const metrics = { registry, prefix: 'txoutbox' };
  const middlewares: Middleware[] = [];
  if (typeof otel !== 'string') middlewares.push(otel.middleware);
  middlewares.push(txoutboxPrometheus.prometheusMiddleware(metrics));
  const deactivate = typeof otel === 'string' ? () => undefined : otel.activate();
  return {
    close: deactivate,
    recorder: [txoutboxPrometheus.prometheusRecorder(metrics)],
    middlewares,
    openTelemetry: typeof otel === 'string' ? otel : TRACING_ON,
    spans: async () => (typeof otel === 'string' ? undefined : await otel.spans()),
  };
}
