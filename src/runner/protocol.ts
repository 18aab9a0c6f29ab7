import type { MetricSnapshot } from './metrics/metrics-ledger.js';

/**
 * The IPC messages between `txoutbox run` (the supervisor) and its consumer processes. JSON over
 * Node's fork channel; a child never outlives the channel (it drains and exits on disconnect).
 */

/** Everything a child needs to run one consumer: plain JSON, built by the supervisor from the config. */
export interface ChildSpec {
  readonly consumer: string;
  readonly databaseUrl: string;
  readonly poolSize: number;
  readonly queryTimeoutMs: number;
  readonly table: string;
  readonly dlqTable: string | false;
  readonly gracefulTimeoutMs: number;
  /** Absolute path of the handler module, and the export to call. */
  readonly handlerPath: string;
  readonly handlerExport: string;
  readonly queues: readonly string[];
  /** subscribe() options as JSON; `retry` is rebuilt in the child. */
  readonly subscribe: Readonly<Record<string, unknown>>;
  readonly metricsPrefix: string;
  /** How often the child reports its registry (≤ 1 s: bounds what a SIGKILL can lose). */
  readonly flushIntervalMs: number;
  /** Where the child also sends per-message statsd metrics (rejected's format); null: none. */
  readonly statsd: { readonly host: string; readonly port: number; readonly prefix: string } | null;
}

export type ParentMessage = { readonly type: 'start'; readonly spec: ChildSpec } | { readonly type: 'stop' };

export type ChildMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'metrics'; readonly snapshot: readonly MetricSnapshot[] }
  | { readonly type: 'fatal'; readonly message: string };

export function isChildMessage(value: unknown): value is ChildMessage {
  const type = (value as { type?: unknown } | null)?.type;
  return type === 'ready' || type === 'metrics' || type === 'fatal';
}

export function isParentMessage(value: unknown): value is ParentMessage {
  const type = (value as { type?: unknown } | null)?.type;
  return type === 'start' || type === 'stop';
}
