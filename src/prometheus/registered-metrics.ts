import { type Aggregator, Counter, Gauge, Histogram } from 'prom-client';

import { InvalidOptionError } from '../errors.js';
import type { AnyRegistry } from './options.js';

export interface MetricSpec {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
}

export interface HistogramSpec extends MetricSpec {
  readonly buckets: readonly number[];
  /** Keep a `{ trace_id }` exemplar per bucket (see histogram()). */
  readonly exemplars?: boolean;
}

/** What this module created in each registry, by name, with the shape it was created with. */
const created = new WeakMap<AnyRegistry, Map<string, { metric: unknown; shape: string }>>();

/**
 * Returns the metric `spec.name` of `registry`, creating it on first use. A metric this module
 * already created there with the same shape is reused: two Outboxes (say one per database, told
 * apart by appName) may share one registry and one prefix, where a plain second `new Counter()`
 * would throw "already registered". A name held by anything else, or by a txoutbox metric of
 * another shape (other buckets), is an InvalidOptionError naming the prefix.
 *
 * Every metric declares its prom-client `aggregator`: a runner merging child registries
 * (AggregatorRegistry.aggregate) sums counters, histograms and the in-process gauge.
 */
function obtain<M>(registry: AnyRegistry, kind: string, spec: MetricSpec & Partial<HistogramSpec>, create: () => M): M {
  let mine = created.get(registry);
  if (mine === undefined) {
    mine = new Map();
    created.set(registry, mine);
  }
  const shape = JSON.stringify([kind, spec.labelNames, spec.buckets ?? null, spec.exemplars ?? false]);
  const known = mine.get(spec.name);
  // Compared with the registry's current entry: after registry.clear() the metric is created anew.
  if (known !== undefined && registry.getSingleMetric(spec.name) === known.metric) {
    if (known.shape === shape) return known.metric as M;
    throw nameTaken(spec.name, 'by a txoutbox metric with other labels or buckets', undefined);
  }
  let metric: M;
  try {
    metric = create();
  } catch (error) {
    throw nameTaken(spec.name, 'by another metric', error);
  }
  mine.set(spec.name, { metric, shape });
  batch?.push(spec.name);
  return metric;
}

/** Names registered by the allOrNothing() call in progress (construction is synchronous). */
let batch: string[] | undefined;

/**
 * Runs `build` (which creates a seam's metrics); if it throws, unregisters what it had registered,
 * so a clash on the fifth name leaves no orphan series behind and a retry with another prefix
 * starts clean.
 */
export function allOrNothing<T>(registry: AnyRegistry, build: () => T): T {
  const names: string[] = [];
  batch = names;
  try {
    return build();
  } catch (error) {
    for (const name of names) registry.removeSingleMetric(name);
    throw error;
  } finally {
    batch = undefined;
  }
}

function nameTaken(name: string, by: string, cause: unknown): InvalidOptionError {
  return new InvalidOptionError({
    option: 'prefix',
    value: name,
    expected: `a prefix whose metric names are free in this registry (the name shown is taken ${by})`,
    fix: 'Use another prefix or another registry, or give every Outbox sharing the registry the same buckets.',
    cause,
  });
}

export function counter(registry: AnyRegistry, spec: MetricSpec): Counter {
  return obtain(registry, 'counter', spec, () => register(registry, new Counter({ ...config(spec), aggregator: 'sum' })));
}

/**
 * A gauge; `aggregator` says how a cluster aggregator combines the processes' values: `sum` for
 * in-process counts, `omit` for values that must not be combined (a handler's gauge:
 * custom-stat-metrics.ts).
 */
export function gauge(registry: AnyRegistry, spec: MetricSpec, aggregator: Aggregator = 'sum'): Gauge {
  return obtain(registry, 'gauge', spec, () => register(registry, new Gauge({ ...config(spec), aggregator })));
}

/**
 * A histogram; with `exemplars`, one whose `observe` takes `{ labels, value, exemplarLabels }`.
 *
 * prom-client 15 refuses `enableExemplars` in the constructor when a registry in `registers` has the
 * Prometheus text content type (the default of `new Registry()`), because that format cannot carry
 * exemplars. But exemplars live in the metric, not in the registry: built with `registers: []` and
 * added with `registry.registerMetric()` (which makes no such check), the histogram works in either
 * kind of registry — the registry's own Prometheus text leaves the exemplars out, and
 * `renderMetrics(registry, true)` (render.ts) prints them.
 */
export function histogram(registry: AnyRegistry, spec: HistogramSpec): Histogram {
  return obtain(registry, 'histogram', spec, () =>
    register(
      registry,
      new Histogram({ ...config(spec), buckets: [...spec.buckets], aggregator: 'sum', enableExemplars: spec.exemplars === true }),
    ),
  );
}

/** Never `registers` (whose default is the global registry): every metric goes through here. */
function config(spec: MetricSpec) {
  return { name: spec.name, help: spec.help, labelNames: [...spec.labelNames], registers: [] };
}

function register<M extends Counter | Gauge | Histogram>(registry: AnyRegistry, metric: M): M {
  registry.registerMetric(metric);
  return metric;
}
