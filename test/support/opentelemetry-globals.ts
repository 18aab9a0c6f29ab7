import { after, before } from 'node:test';

import { context, metrics, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from '@opentelemetry/core';

/**
 * The OpenTelemetry API's globals as an application's SDK setup installs them (an AsyncLocalStorage
 * context manager, the W3C propagators), for the test file that calls it; removed after the file,
 * with the tracer and meter providers it may have registered.
 */
export function useOpenTelemetryGlobals(): void {
  before(() => {
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(
      new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
    );
  });
  after(() => {
    context.disable();
    propagation.disable();
    trace.disable();
    metrics.disable();
  });
}
