import type { Aggregator, Counter, Gauge, Histogram } from 'prom-client';

import type { CustomStat } from '../instrumentation/middleware.js';
import { BROKER } from './labels.js';
import type { AnyRegistry } from './options.js';
import { counter, gauge, histogram } from './registered-metrics.js';

const LABELS = ['app_name', 'broker', 'handler'] as const;
const UNSAFE = /[^a-zA-Z0-9_]/g;
/**
 * How a handler's gauge is declared to a cluster aggregator: its processes' values must not be
 * combined. The last value one process set (a lag, a reading taken elsewhere) summed over N
 * processes is N times it, and no other rule (max, min, last) fits every gauge a handler may set.
 * txoutbox run's MetricsLedger keeps each process's value as its own series with a `process` label
 * (architecture/runner.md, "Handler gauges"); prom-client's own cluster AggregatorRegistry leaves
 * the gauge out.
 */
const PER_PROCESS: Aggregator = 'omit';

/**
 * Handlers' ctx.stats as series (rejected §4.4's mapping): a counter `<prefix>_custom_<key>_total`,
 * a gauge `<prefix>_custom_<key>`, a duration histogram `<prefix>_custom_<key>_seconds`; each
 * created on first use and cached by metric name. Keys arrive sanitised and capped by
 * CustomStatKeys, which also refuses one key used as two kinds; sanitising again here costs nothing
 * and keeps a hand-built CustomStat from producing an invalid name.
 */
export class CustomStatMetrics {
  readonly #registry: AnyRegistry;
  readonly #prefix: string;
  readonly #appName: string;
  readonly #durationBuckets: readonly number[];
  readonly #metrics = new Map<string, Counter | Gauge | Histogram>();

  constructor(registry: AnyRegistry, prefix: string, appName: string, durationBuckets: readonly number[]) {
    this.#registry = registry;
    this.#prefix = prefix;
    this.#appName = appName;
    this.#durationBuckets = durationBuckets;
  }

  /** Records one stat. Throws on a name clash; the middleware chain logs that and goes on. */
  record(stat: CustomStat): void {
    const key = stat.key.replace(UNSAFE, '_');
    const labels = { app_name: this.#appName, broker: BROKER, handler: stat.subscriber };
    switch (stat.kind) {
      case 'counter':
        this.#get(`${this.#prefix}_custom_${key}_total`, (name) => counter(this.#registry, this.#spec(name, stat.key))).inc(
          labels,
          stat.value,
        );
        return;
      case 'gauge':
        this.#get(`${this.#prefix}_custom_${key}`, (name) => gauge(this.#registry, this.#spec(name, stat.key), PER_PROCESS)).set(
          labels,
          stat.value,
        );
        return;
      case 'duration':
        this.#get(`${this.#prefix}_custom_${key}_seconds`, (name) =>
          histogram(this.#registry, { ...this.#spec(name, stat.key), buckets: this.#durationBuckets }),
        ).observe(labels, stat.value);
        return;
      default:
        return; // a kind added to CustomStat later: not exported until mapped here
    }
  }

  #spec(name: string, key: string) {
    return { name, help: `Custom ${key} from ctx.stats`, labelNames: LABELS };
  }

  #get<M extends Counter | Gauge | Histogram>(name: string, create: (name: string) => M): M {
    let metric = this.#metrics.get(name) as M | undefined;
    if (metric === undefined) {
      metric = create(name);
      this.#metrics.set(name, metric);
    }
    return metric;
  }
}
