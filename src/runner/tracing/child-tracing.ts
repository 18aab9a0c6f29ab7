import type * as OtelApi from '@opentelemetry/api';
import type * as ContextAsyncHooks from '@opentelemetry/context-async-hooks';
import type * as OtelCore from '@opentelemetry/core';
import type * as OtlpHttp from '@opentelemetry/exporter-trace-otlp-http';
import type * as OtelResources from '@opentelemetry/resources';
import type * as SdkTraceBase from '@opentelemetry/sdk-trace-base';

import { errorMessage } from '../../errors.js';
import type { Middleware } from '../../instrumentation/middleware.js';
import { loadPeer } from '../../relay/sinks/load-peer.js';
import { beforeDeadline } from '../../util/deadline.js';
import type { Logger } from '../../util/logger.js';
import { type ChildTracingSpec, EXIT_FLUSH_BUDGET_MS } from '../protocol.js';
import { watchExports } from './export-watch.js';

/**
 * How long a draining child gives its spans to reach the endpoint: all of its exit budget (the
 * metrics report and the statsd flush run beside the export, child-main.ts). An export still
 * running then is abandoned (the process exits); the spans it carried are lost, the rows they
 * describe are not.
 */
export const TRACING_FLUSH_BUDGET_MS = EXIT_FLUSH_BUDGET_MS;

const NEEDED_BY = 'tracing: in txoutbox.yaml';

export interface ChildTracing {
  /** tracingMiddleware on this child's provider, for the Outbox's `middlewares` (first). */
  readonly middleware: Middleware;
  /** Exports what is buffered and stops the provider, within TRACING_FLUSH_BUDGET_MS. Never throws. */
  shutdown(): Promise<void>;
}

/**
 * The OpenTelemetry setup `architecture/observability.md` shows for an application, done for one
 * `txoutbox run` child: a tracer provider (`service.name`, a parent-based ratio sampler) with a
 * BatchSpanProcessor and an OTLP/HTTP (JSON) exporter, installed as the global provider, with the
 * W3C trace-context and baggage propagators and the AsyncLocalStorage context manager. Global, so
 * the handler's own spans (and any instrumentation it loads) join the `process` span's trace.
 *
 * Every package is an optional peer loaded here, on use (tracing-peers.ts): a child without a
 * `tracing:` section never loads one. A missing one is a MissingPeerDependencyError (the config
 * check names them all before any child starts; this is the second line).
 */
export async function startChildTracing(spec: ChildTracingSpec, logger: Logger): Promise<ChildTracing> {
  const api = await loadPeer<typeof OtelApi>('@opentelemetry/api', NEEDED_BY);
  const core = await loadPeer<typeof OtelCore>('@opentelemetry/core', NEEDED_BY);
  const resources = await loadPeer<typeof OtelResources>('@opentelemetry/resources', NEEDED_BY);
  const sdk = await loadPeer<typeof SdkTraceBase>('@opentelemetry/sdk-trace-base', NEEDED_BY);
  const asyncHooks = await loadPeer<typeof ContextAsyncHooks>('@opentelemetry/context-async-hooks', NEEDED_BY);
  const otlp = await loadPeer<typeof OtlpHttp>('@opentelemetry/exporter-trace-otlp-http', NEEDED_BY);
  // Only now: it imports @opentelemetry/api, which is known to resolve at this point.
  const { tracingMiddleware } = await import('../../opentelemetry/tracing-middleware.js');

  const origin = new URL(spec.endpoint).origin;
  const exporter = watchExports(
    new otlp.OTLPTraceExporter({ url: spec.endpoint, headers: { ...spec.headers } }),
    logger,
    origin,
    core.ExportResultCode.SUCCESS,
  );
  const provider = new sdk.BasicTracerProvider({
    resource: resources.defaultResource().merge(resources.resourceFromAttributes({ 'service.name': spec.serviceName })),
    // Parent-based: a row carries its publisher's decision (the traceparent's sampled flag), and a
    // consumer that re-decided would cut traces in half. The ratio decides traces that start here.
    sampler: new sdk.ParentBasedSampler({ root: new sdk.TraceIdRatioBasedSampler(spec.sampler) }),
    spanProcessors: [new sdk.BatchSpanProcessor(exporter)],
  });
  // Each returns false when something registered first (OpenTelemetry auto-instrumentation
  // preloaded through NODE_OPTIONS, as the Kubernetes operator injects it): the process spans still
  // go to this provider, but the handler's own spans then go to the other SDK, under its service
  // name and sampler. Said once, at warn, instead of tracing on as if all were well (review).
  const taken = [
    api.context.setGlobalContextManager(new asyncHooks.AsyncLocalStorageContextManager().enable())
      ? undefined
      : 'context manager',
    api.propagation.setGlobalPropagator(
      new core.CompositePropagator({ propagators: [new core.W3CTraceContextPropagator(), new core.W3CBaggagePropagator()] }),
    )
      ? undefined
      : 'propagator',
    api.trace.setGlobalTracerProvider(provider) ? undefined : 'tracer provider',
  ].filter((what) => what !== undefined);
  if (taken.length > 0)
    logger.warn(
      { alreadyRegistered: taken },
      "tracing: another OpenTelemetry SDK registered the global context manager, propagator or tracer provider first (auto-instrumentation in NODE_OPTIONS?): txoutbox's process spans go to the runner's exporter, the handler's own spans to that SDK, under its service name and sampler. Remove one of the two, or the config's tracing: section",
    );
  const { consumerSpanRelation, skipUnsampledParents } = spec;
  logger.info(
    { endpoint: origin, serviceName: spec.serviceName, sampler: spec.sampler, skipUnsampledParents },
    'tracing to OTLP/HTTP',
  );

  return {
    middleware: tracingMiddleware({ tracerProvider: provider, consumerSpanRelation, skipUnsampledParents }),
    async shutdown() {
      const done = await beforeDeadline(
        provider.shutdown().then(
          () => true,
          (error: unknown) => {
            logger.warn({ err: errorMessage(error) }, 'tracing shutdown failed');
            return true;
          },
        ),
        TRACING_FLUSH_BUDGET_MS,
        () => false,
      );
      if (!done)
        logger.warn(
          { endpoint: origin, budgetMs: TRACING_FLUSH_BUDGET_MS },
          'tracing flush did not finish in time: the last spans are dropped',
        );
    },
  };
}
