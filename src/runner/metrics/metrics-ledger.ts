import { AggregatorRegistry, type Registry } from 'prom-client';

import { checkSnapshot, type MetricSnapshot } from './snapshot-shape.js';

export type { MetricSnapshot } from './snapshot-shape.js';

/**
 * How many retired ids are remembered. A late report trails its child's exit by one IPC read, while
 * a thousand other children exiting in between takes minutes even in a crash loop (restarts back
 * off to 60 s); the bound keeps a runner that lives for months from growing the set forever.
 */
const REMEMBERED_RETIREMENTS = 1_000;

/** Types whose samples only grow while a process lives: they survive the process in the baseline. */
const CUMULATIVE_TYPES = new Set(['counter', 'histogram', 'summary']);

/** The label that keeps apart the processes' values of a gauge declared `omit`. */
const PROCESS_LABEL = 'process';

/**
 * The runner's view of every child's metrics, merged into one registry at scrape time, with
 * counters that never go backwards (the anchor's weakness, rejected §4.3 / §6).
 *
 * Each child reports its whole registry (cumulative since it started) every flush interval. A live
 * child contributes its latest report. When a child exits — crash, SIGKILL, reload — its latest
 * report's counters and histograms move into `retired`, a running sum over every dead child, and
 * the replacement starts from zero on top of it: the sum never drops. What a child counted after
 * its last report is lost, at most one flush interval (≤ 1 s). Gauges are not carried over: a
 * dead process holds nothing in flight.
 *
 * A gauge a metric declares `omit` — a handler's `ctx.stats.set`, whose processes' values must
 * not be combined (custom-stat-metrics.ts) — is kept per process instead: each live child's values
 * get a `process` label, a number the child holds from its start (admit) or first report until it
 * retires, the lowest its consumer's live children do not hold. Never a pid: a number freed by an exit is
 * taken by the replacement, so a consumer's numbers stay below the most processes it ever ran at
 * once (`processes`, one more during a rollout) however often they restart, and a dead child's
 * series goes with its other gauges (architecture/runner.md, "Handler gauges").
 *
 * States per child: live (reports replace its snapshot) → retired (folded into the baseline; later
 * reports are ignored). A retired child never comes back: a report that was still in the IPC pipe
 * when the exit was seen would otherwise make it live again, its counters counted twice (baseline
 * plus snapshot) and its gauges stuck forever (issue 13 item 13). The supervisor retires a child
 * on its process's `close`, after the channel closed, so such a report is counted before it
 * retires; the ignore rule is the second line.
 */
export class MetricsLedger {
  readonly #live = new Map<string, readonly MetricSnapshot[]>();
  /** Ids retired most recently, oldest first; bounded, as a late report follows its exit closely. */
  readonly #retiredIds = new Set<string>();
  #retired: MetricSnapshot[] = [];
  /** Live child → its consumer and process number (PROCESS_LABEL). */
  readonly #numbers = new Map<string, { readonly consumer: string; readonly number: number }>();
  /** Consumer → the process numbers its live children hold. */
  readonly #taken = new Map<string, Set<number>>();

  /**
   * Gives `child`, a process of `consumer` about to start, its process number (the lowest its
   * consumer's live children do not hold), held until it retires. The supervisor hands it to the
   * process, whose statsd gauges carry it (statsd-client.ts); the `process` label is the same.
   */
  admit(child: string, consumer: string): number {
    return this.#numberOf(child, consumer);
  }

  /**
   * Replaces the latest report of `child`, a process of `consumer` (whose live processes share the
   * process numbers); ignored once the child was retired. Returns what was left out of it, and why
   * (the supervisor logs it): entries that are not prom-client's JSON (snapshot-shape.ts; the whole
   * report when it is not a list, the last good one then standing), and a metric whose name another
   * process reports as another type. Merged, those made one family of two types (a handler's gauge
   * `x_seconds` in one consumer, its duration `x` in another: a gauge with `_bucket` samples); the
   * type seen first keeps the name until no process reports it.
   */
  report(child: string, snapshot: unknown, consumer = ''): readonly string[] {
    if (this.#retiredIds.has(child)) return [];
    const checked = checkSnapshot(snapshot);
    const problems = [...checked.problems];
    const metrics = checked.metrics;
    if (metrics === undefined) return problems;
    const types = this.#typesBesides(child);
    const consistent = metrics.filter((metric) => {
      const other = types.get(metric.name);
      if (other === undefined || other === metric.type) return true;
      problems.push(`metric ${JSON.stringify(metric.name)} is a ${metric.type} here and a ${other} in another process: left out`);
      return false;
    });
    this.#live.set(child, labelPerProcess(consistent, this.#numberOf(child, consumer)));
    return problems;
  }

  /** Folds a child that exited into the baseline. Idempotent. */
  retire(child: string): void {
    // First: a child admitted under an id retired before (two failed forks in one millisecond) frees its number too.
    this.#freeNumber(child);
    if (this.#retiredIds.has(child)) return;
    this.#retiredIds.add(child);
    if (this.#retiredIds.size > REMEMBERED_RETIREMENTS) {
      const oldest = this.#retiredIds.values().next().value;
      if (oldest !== undefined) this.#retiredIds.delete(oldest);
    }
    const last = this.#live.get(child);
    if (last === undefined) return;
    this.#live.delete(child);
    const cumulative = last.filter((metric) => CUMULATIVE_TYPES.has(metric.type));
    // sum is right for the baseline whatever a metric's own aggregator: it accumulates over time.
    const asSum = (metrics: readonly MetricSnapshot[]) => metrics.map((metric) => ({ ...metric, aggregator: 'sum' }));
    this.#retired = toSnapshots(AggregatorRegistry.aggregate([asSum(this.#retired), asSum(cumulative)]));
  }

  /** Live children, for the readiness check and the process gauge. */
  get liveChildren(): readonly string[] {
    return [...this.#live.keys()];
  }

  /** Every child's metrics merged by each metric's aggregator, plus the retired baseline. */
  merged(): Registry {
    return AggregatorRegistry.aggregate([this.#retired, ...this.#live.values()]);
  }

  /** The type of every metric name the baseline and the live children other than `child` hold. */
  #typesBesides(child: string): Map<string, string> {
    const types = new Map<string, string>();
    const note = (metrics: readonly MetricSnapshot[]) => {
      for (const metric of metrics) if (!types.has(metric.name)) types.set(metric.name, metric.type);
    };
    note(this.#retired);
    for (const [id, metrics] of this.#live) if (id !== child) note(metrics);
    return types;
  }

  /** The child's process number: the one it holds, or the lowest its consumer's live children do not. */
  #numberOf(child: string, consumer: string): number {
    const held = this.#numbers.get(child);
    if (held !== undefined) return held.number;
    let taken = this.#taken.get(consumer);
    if (taken === undefined) {
      taken = new Set();
      this.#taken.set(consumer, taken);
    }
    let number = 0;
    while (taken.has(number)) number += 1;
    taken.add(number);
    this.#numbers.set(child, { consumer, number });
    return number;
  }

  #freeNumber(child: string): void {
    const held = this.#numbers.get(child);
    if (held === undefined) return;
    this.#numbers.delete(child);
    const { consumer, number } = held;
    const taken = this.#taken.get(consumer);
    taken?.delete(number);
    if (taken?.size === 0) this.#taken.delete(consumer);
  }
}

/**
 * A child's report with every gauge declared `omit` labelled with the child's process number, and
 * then summed like the rest: no two live children share a number, so each sample stays its own.
 */
function labelPerProcess(snapshot: readonly MetricSnapshot[], number: number): readonly MetricSnapshot[] {
  if (!snapshot.some(isPerProcess)) return snapshot;
  const label = String(number);
  return snapshot.map((metric) =>
    isPerProcess(metric)
      ? {
          ...metric,
          aggregator: 'sum',
          values: metric.values.map((value) => ({ ...value, labels: { ...value.labels, [PROCESS_LABEL]: label } })),
        }
      : metric,
  );
}

function isPerProcess(metric: MetricSnapshot): boolean {
  return metric.type === 'gauge' && metric.aggregator === 'omit';
}

/** The JSON form of an aggregated registry, synchronously (its metrics are plain value holders). */
function toSnapshots(registry: Registry): MetricSnapshot[] {
  return registry.getMetricsAsArray().map((metric) => {
    const value = (metric as unknown as { get(): MetricSnapshot }).get();
    return { ...value, values: value.values };
  });
}
