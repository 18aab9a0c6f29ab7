/**
 * The IPC messages between `txoutbox run` (the supervisor) and its consumer processes. JSON over
 * Node's fork channel; a child never outlives the channel (it drains and exits on disconnect).
 */

/**
 * How long a draining child may take, after its Outbox stopped (within gracefulTimeoutMs + 1.5 s),
 * for its last metrics report, statsd flush and span export together: the supervisor SIGKILLs it
 * at gracefulTimeoutMs + KILL_MARGIN_MS (5 s, consumer-slot.ts), and this leaves 0.5 s of that for
 * the exit itself. What is not out by then is abandoned: spans and counts, never rows.
 */
export const EXIT_FLUSH_BUDGET_MS = 3_000;

/** Everything a child needs to run one consumer or relay: plain JSON, built by the supervisor from the config. */
interface ChildSpecBase {
  /** The consumer's or relay's name (the two share one namespace: it is the `consumer` label). */
  readonly consumer: string;
  /** The config's url with `application_name=txoutbox-<consumer>` unless it names one (application-name.ts). */
  readonly databaseUrl: string;
  /** The config's poolSize, or the one sized for this consumer (connection-budget.ts). */
  readonly poolSize: number;
  /** The Outbox's connection options the config sets (transactionPooling, listen, …; validate-connection.ts). */
  readonly connection?: Readonly<Record<string, unknown>>;
  readonly queryTimeoutMs: number;
  readonly table: string;
  readonly dlqTable: string | false;
  readonly gracefulTimeoutMs: number;
  readonly queues: readonly string[];
  /** subscribe() (or relay()) options as JSON; `retry` is rebuilt in the child. */
  readonly subscribe: Readonly<Record<string, unknown>>;
  readonly metricsPrefix: string;
  /** How often the child reports its registry (≤ 1 s: bounds what a SIGKILL can lose). */
  readonly flushIntervalMs: number;
  /** Where the child also sends per-message statsd metrics (rejected's format); null: none. */
  readonly statsd: { readonly host: string; readonly port: number; readonly prefix: string } | null;
  /**
   * OpenTelemetry spans to an OTLP/HTTP endpoint (src/runner/tracing/child-tracing.ts); absent: no
   * tracing. The headers may hold a key: like a sink's options, they travel over IPC only.
   */
  readonly tracing?: ChildTracingSpec;
  /** The module and export whose value is the Outbox's `schemas` (typed-events.md); absent: none. */
  readonly schemas?: { readonly path: string; readonly export: string };
}

export interface ChildTracingSpec {
  readonly endpoint: string;
  readonly headers: Readonly<Record<string, string>>;
  /** Resolved: the config's serviceName, else the consumer's or relay's name. */
  readonly serviceName: string;
  readonly sampler: number;
  readonly consumerSpanRelation: 'parent' | 'link';
  readonly skipUnsampledParents: boolean;
}

/** A consumer: the handler module's export runs each message. */
export interface ConsumerChildSpec extends ChildSpecBase {
  /** Absolute path of the handler module, and the export to call. */
  readonly handlerPath: string;
  readonly handlerExport: string;
}

/**
 * A relay: outbox.relay(queues, sink) with the sink a registered type builds from `options`
 * (src/runner/config/relay-sink-types.ts). The options may hold secrets (a webhook secret, a
 * broker password): they travel over the IPC channel only, never in argv, env or a log line.
 */
export interface RelayChildSpec extends ChildSpecBase {
  readonly sink: { readonly type: string; readonly options: Readonly<Record<string, unknown>> };
}

export type ChildSpec = ConsumerChildSpec | RelayChildSpec;

export function isRelaySpec(spec: ChildSpec): spec is RelayChildSpec {
  return 'sink' in spec;
}

/**
 * How often a running child re-runs outbox.ping() and reports it (`health`). A ping is bounded by
 * 5 s, and the slot turns a process down only after HEALTH_DOWN_AFTER_FAILED_PINGS (3) failures in
 * a row, so a broker or database that went down shows in /readyz within about 30 s.
 */
export const HEALTH_INTERVAL_MS = 5_000;

export type ParentMessage =
  /** `process`: the process's number among its consumer's live processes (MetricsLedger.admit). */
  { readonly type: 'start'; readonly spec: ChildSpec; readonly process: number } | { readonly type: 'stop' };

export type ChildMessage =
  /**
   * Its Outbox has started (it claims rows from now on); sent before the first `health` and
   * `ready`, which wait for a ping() (at most PING_TIMEOUT_MS). The slot then no longer times the
   * start as a module that never finishes loading (consumer-slot.ts #onConsuming).
   */
  | { readonly type: 'consuming' }
  | { readonly type: 'ready' }
  /**
   * Whether the child's outbox.ping() passes (the database, its subscription's loop, a relay's
   * sink): sent before `ready`, then every HEALTH_INTERVAL_MS; each report is one raw sample, the
   * slot (consumer-slot.ts) judges them. A process that is not up is not counted ready (/readyz,
   * the dashboard) until it is again, and a reload's replacement replaces nothing until it is.
   */
  | { readonly type: 'health'; readonly up: boolean }
  /** prom-client's JSON (MetricSnapshot[]), checked entry by entry by the ledger (snapshot-shape.ts): a handler may send() anything. */
  | { readonly type: 'metrics'; readonly snapshot: unknown }
  | { readonly type: 'fatal'; readonly message: string };

export function isChildMessage(value: unknown): value is ChildMessage {
  const type = (value as { type?: unknown } | null)?.type;
  return type === 'consuming' || type === 'ready' || type === 'health' || type === 'metrics' || type === 'fatal';
}

export function isParentMessage(value: unknown): value is ParentMessage {
  const type = (value as { type?: unknown } | null)?.type;
  return type === 'start' || type === 'stop';
}
