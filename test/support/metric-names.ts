import { Counter, Gauge, Histogram, Registry } from 'prom-client';

import type { Outbox } from '../../src/index.js';
import { prometheusMiddleware, prometheusRecorder, queueStateCollector } from '../../src/prometheus/index.js';

export interface RegisteredMetric {
  readonly name: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly labelNames: readonly string[];
}

/**
 * Every metric prometheusMiddleware, prometheusRecorder and queueStateCollector register with the
 * default prefix, in registration order (handler custom stats, created on first use, and the
 * runner's own series excepted). `outbox` is only read for its internals: nothing is queried.
 */
export function registeredMetrics(outbox: Outbox): RegisteredMetric[] {
  const registry = new Registry();
  prometheusMiddleware({ registry });
  prometheusRecorder({ registry });
  queueStateCollector(outbox, { registry });
  return registry.getMetricsAsArray().map((metric) => {
    const type = metric instanceof Counter ? 'counter' : metric instanceof Gauge ? 'gauge' : 'histogram';
    if (type === 'histogram' && !(metric instanceof Histogram)) throw new Error(`${metric.name}: unexpected metric kind`);
    // prom-client keeps the constructor's configuration on the metric; its types do not declare it.
    const { labelNames = [] } = metric as unknown as { labelNames?: readonly string[] };
    return { name: metric.name, type, labelNames };
  });
}

/** The names of registeredMetrics(outbox). */
export function registeredMetricNames(outbox: Outbox): Set<string> {
  return new Set(registeredMetrics(outbox).map((metric) => metric.name));
}

/** A name as written in PromQL, without the histogram series suffixes. */
export function metricFamily(name: string): string {
  return name.replace(/_(bucket|sum|count)$/, '');
}
