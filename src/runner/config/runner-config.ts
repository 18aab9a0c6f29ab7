import { DEFAULT_QUERY_TIMEOUT_MS } from '../../outbox-options.js';
import type { NotifyMode } from '../../producer/wake-after-commit.js';
import { DEFAULT_TABLE } from '../../schema/schema-names.js';
/**
 * What `loadRunnerConfig()` returns: a `txoutbox.yaml` after interpolation, validation and defaults.
 * The format is documented in architecture/runner.md.
 */

export interface RunnerConfig {
  /** Absolute path of the file it was read from. */
  readonly file: string;
  readonly database: {
    /** The connection URL. Holds the password: show it only through redactConnectionString. */
    readonly url: string;
    /**
     * Pool size of each consumer process when the file sets one; undefined: each consumer's pool is
     * sized for what it serves (connection-budget.ts, architecture/runner.md "Connection budget").
     */
    readonly poolSize: number | undefined;
    /** The Outbox's queryTimeoutMs in each consumer process. */
    readonly queryTimeoutMs: number;
    /** The Outbox's transactionPooling, in every process (architecture/pgbouncer.md). */
    readonly transactionPooling: boolean;
    /** The Outbox's preparedStatements, listen and notify when the file sets them (else its defaults). */
    readonly preparedStatements: boolean | undefined;
    readonly listen: boolean | undefined;
    readonly notify: NotifyMode | undefined;
    /** The Outbox's listenConnectionString: a direct connection for LISTEN. Holds a password, like url. */
    readonly listenUrl: string | undefined;
  };
  readonly table: string;
  /** false when the config turns the DLQ off (`dlqTable: false`). */
  readonly dlqTable: string | false;
  /**
   * `dlqRetention`: the runner deletes dead letters older than this (architecture/runner.md,
   * DLQ retention); undefined when the key is absent: dead letters are kept until purged.
   */
  readonly dlqRetentionMs: number | undefined;
  /** How long each consumer process waits for running handlers when it drains. */
  readonly gracefulTimeoutMs: number;
  readonly metrics: {
    readonly prometheus: PrometheusConfig;
    /** Present only when the config has a `metrics.statsd` section. */
    readonly statsd: StatsdConfig | undefined;
  };
  /** Body schemas for every child's Outbox, when the file names them. */
  readonly schemas?: SchemasConfig;
  /** By consumer name, in file order. */
  readonly consumers: ReadonlyMap<string, ConsumerConfig>;
  /** By relay name, in file order (empty without a `relays:` section). Names are distinct from the consumers'. */
  readonly relays: ReadonlyMap<string, RelayConfig>;
  /** The web dashboard the runner serves; absent without a `dashboard:` section or with `enabled: false`. */
  readonly dashboard?: DashboardConfig;
  /** OpenTelemetry spans from every child; absent without a `tracing:` section or with `enabled: false`. */
  readonly tracing?: TracingConfig;
}

/** `tracing:` (architecture/runner.md, Tracing). */
export interface TracingConfig {
  /** The OTLP/HTTP traces URL the exporter POSTs JSON to, as written. May hold a key: log its origin only. */
  readonly endpoint: string;
  /** Sent with every export. The values are secrets: never logged. */
  readonly headers: Readonly<Record<string, string>>;
  /** `service.name` of every child's spans; absent: each child's consumer or relay name. */
  readonly serviceName?: string;
  /** Ratio of the traces starting in a child that are sampled; a carried parent's decision is kept. */
  readonly sampler: number;
  readonly consumerSpanRelation: 'parent' | 'link';
  /** tracingMiddleware's `skipUnsampledParents`: no `process` span for a row whose trace is not sampled. Default true (validate-tracing.ts). */
  readonly skipUnsampledParents: boolean;
}

export interface DashboardConfig {
  readonly host: string;
  readonly port: number;
  /** Holds a secret: never logged. */
  readonly token?: string;
  readonly readOnly: boolean;
}

export interface PrometheusConfig {
  readonly enabled: boolean;
  readonly host: string;
  readonly port: number;
  readonly prefix: string;
  /**
   * One runner per table reads the queue state (an advisory-lock leader); false: every runner reads
   * (behind a transaction pooler). architecture/runner.md, "Queue state: one reader per cluster".
   */
  readonly queueStateLeader: boolean;
}

export interface StatsdConfig {
  readonly host: string;
  readonly port: number;
  readonly prefix: string;
}

export interface ConsumerConfig {
  readonly name: string;
  /** Absolute path of the handler module (checked to exist; the export is checked when a child loads it). */
  readonly handlerPath: string;
  readonly handlerExport: string;
  /** Deduplicated, in file order. */
  readonly queues: readonly string[];
  readonly processes: number;
  /**
   * The subscribe() options the file sets, as JSON (validated by subscribe()'s own resolver);
   * `retry` is the `{ strategy, … }` section, rebuilt into a strategy by subscribeOptionsFromSpec().
   */
  readonly subscribe: Readonly<Record<string, unknown>>;
}

/** `schemas:`: the module whose export is every child Outbox's `schemas` (validate-schemas.ts). */
export interface SchemasConfig {
  /** Absolute path of the module (checked to exist; the export is checked when a child loads it). */
  readonly path: string;
  readonly export: string;
}

export interface RelayConfig {
  readonly name: string;
  /** Deduplicated, in file order. */
  readonly queues: readonly string[];
  readonly processes: number;
  /**
   * The `sink:` section: a registered type (relay-sink-types.ts) and the factory's options as
   * written, checked by the factory's own resolver. May hold secrets: never log it.
   */
  readonly sink: { readonly type: string; readonly options: Readonly<Record<string, unknown>> };
  /** The relay() options the file sets, as JSON (like ConsumerConfig.subscribe); RELAY_DEFAULTS fill the rest. */
  readonly subscribe: Readonly<Record<string, unknown>>;
}

export const RUNNER_DEFAULTS = {
  /** The Outbox's own default (DEFAULT_QUERY_TIMEOUT_MS). */
  queryTimeoutMs: DEFAULT_QUERY_TIMEOUT_MS,
  /** The Outbox's own default: `outbox` in the `txoutbox` schema. */
  table: DEFAULT_TABLE,
  /** The Outbox's own default graceful timeout. */
  gracefulTimeoutMs: 15_000,
  // 9464 is the port OpenTelemetry's Prometheus exporter uses by convention; never 9090, which is
  // Prometheus's own (rejected's default, reference/rejected.md §6.2 item 6).
  prometheus: { enabled: true, host: '127.0.0.1', port: 9464, prefix: 'txoutbox', queueStateLeader: true },
  statsd: { host: '127.0.0.1', port: 8125, prefix: 'txoutbox' },
  processes: 1,
  handlerExport: 'default',
  /** The export of the `schemas:` module read when the config names only the module. */
  schemasExport: 'schemas',
  /** Every trace that starts in a child; parent-based, so a row's carried decision is kept. */
  tracing: { sampler: 1 },
} as const;
