/** One metric of a child's registry, as `registry.getMetricsAsJSON()` returns it (JSON over IPC). */
export interface MetricSnapshot {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly aggregator: string;
  readonly values: readonly {
    readonly value: number;
    readonly labels: Readonly<Record<string, string | number>>;
    readonly metricName?: string;
  }[];
}

/** prom-client's metric types and cluster aggregators: what AggregatorRegistry.aggregate can merge. */
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary']);
const AGGREGATORS = new Set(['sum', 'first', 'min', 'max', 'average', 'omit']);
/** Prometheus's metric and label name grammar. */
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A report's metrics that can be merged, and why the others were left out. */
export interface CheckedSnapshot {
  /** undefined: the report is not a list, and is left out whole. */
  readonly metrics: readonly MetricSnapshot[] | undefined;
  readonly problems: readonly string[];
}

/**
 * A child's `metrics` message as it came over IPC, checked entry by entry. Our own child sends
 * prom-client's JSON, but a handler module runs in the same process and may call process.send()
 * with anything: one malformed entry made every later scrape throw (the runner's /metrics 500
 * until the child exited). A report that is not a list is left out whole; a bad entry is left out alone.
 */
export function checkSnapshot(value: unknown): CheckedSnapshot {
  if (!Array.isArray(value)) return { metrics: undefined, problems: ['the report is not a list of metrics: left out whole'] };
  const metrics: MetricSnapshot[] = [];
  const problems: string[] = [];
  const names = new Set<string>();
  for (const entry of value as unknown[]) {
    const problem = problemOf(entry);
    if (problem !== undefined) problems.push(problem);
    else if (names.has((entry as MetricSnapshot).name)) {
      // A registry never holds two; merged, a second of another type made a family of two types.
      problems.push(`metric ${JSON.stringify((entry as MetricSnapshot).name)} is reported twice: the second left out`);
    } else {
      names.add((entry as MetricSnapshot).name);
      metrics.push(entry as MetricSnapshot);
    }
  }
  return { metrics, problems };
}

function problemOf(entry: unknown): string | undefined {
  if (typeof entry !== 'object' || entry === null) return `an entry is not a metric (${describe(entry)}): left out`;
  const metric = entry as Record<string, unknown>;
  const name = typeof metric.name === 'string' ? metric.name : undefined;
  const called = name === undefined ? 'a metric without a name' : `metric ${JSON.stringify(name)}`;
  if (name === undefined || !METRIC_NAME.test(name)) return `${called}: not a valid Prometheus metric name; left out`;
  // prom-client keeps a registry's metrics in a plain object: `constructor` or `toString` reads as
  // registered already, and its registerMetric() threw at every scrape and in retire().
  if (name in Object.prototype) return `${called}: a name prom-client cannot register (an Object.prototype property); left out`;
  if (typeof metric.help !== 'string') return `${called}: its help is not a string; left out`;
  if (typeof metric.type !== 'string' || !TYPES.has(metric.type))
    return `${called}: unknown type ${describe(metric.type)}; left out`;
  if (typeof metric.aggregator !== 'string' || !AGGREGATORS.has(metric.aggregator))
    return `${called}: unknown aggregator ${describe(metric.aggregator)}; left out`;
  if (!Array.isArray(metric.values)) return `${called}: its values are not a list; left out`;
  for (const sample of metric.values as unknown[]) {
    const problem = sampleProblem(sample);
    if (problem !== undefined) return `${called}: ${problem}; left out`;
  }
  return undefined;
}

function sampleProblem(sample: unknown): string | undefined {
  if (typeof sample !== 'object' || sample === null) return 'a sample is not an object';
  const { value, labels, metricName } = sample as Record<string, unknown>;
  // null: a NaN gauge, which JSON (the IPC channel's serialization) writes as null.
  if (typeof value !== 'number' && value !== null) return `a sample's value is ${describe(value)}, not a number`;
  if (metricName !== undefined && (typeof metricName !== 'string' || !METRIC_NAME.test(metricName)))
    return `a sample's metricName is ${describe(metricName)}`;
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) return "a sample's labels are not an object";
  for (const [label, labelValue] of Object.entries(labels)) {
    if (!LABEL_NAME.test(label)) return `label ${JSON.stringify(label)} is not a valid label name`;
    if (typeof labelValue !== 'string' && typeof labelValue !== 'number')
      return `label ${JSON.stringify(label)} is ${describe(labelValue)}`;
  }
  return undefined;
}

function describe(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
    case 'number':
    case 'boolean':
    case 'bigint':
      return String(value);
    case 'object':
      return value === null ? 'null' : Array.isArray(value) ? 'a list' : 'an object';
    default:
      return typeof value; // undefined, a function, a symbol
  }
}
