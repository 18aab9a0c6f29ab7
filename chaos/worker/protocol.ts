/**
 * The IPC between the harness and a chaos worker (one Outbox consuming the chain queue, in a
 * process of its own so that a stop() that hangs can be timed, reported and killed without taking
 * the harness with it).
 */

export interface WorkerSpec {
  readonly productRoot: string;
  /** What the Outbox connects to: the server, or the TCP proxy in front of it. */
  readonly databaseUrl: string;
  /** What the handler's own pool connects to (the application's connections see the same faults). */
  readonly appDatabaseUrl: string;
  readonly poolSize: number;
  readonly gracefulTimeoutMs: number;
  readonly handlerDelayMs: number;
  /** subscribe() options (JSON only: the retry strategy stays the default). */
  readonly subscribe: Readonly<Record<string, number | string | boolean>>;
}

export type ToWorker =
  { readonly type: 'start'; readonly spec: WorkerSpec } | { readonly type: 'stop' } | { readonly type: 'ping' };

/** Counts of recorder events, and when the last claim that returned rows finished (epoch ms). */
export interface WorkerHeartbeat {
  readonly type: 'heartbeat';
  readonly lastFetchedAt: number | null;
  readonly events: Readonly<Record<string, number>>;
}

export type FromWorker =
  | { readonly type: 'ready' }
  | WorkerHeartbeat
  | { readonly type: 'pong'; readonly ok: boolean; readonly ms: number }
  | { readonly type: 'stopped'; readonly ms: number; readonly events: Readonly<Record<string, number>> }
  | { readonly type: 'fatal'; readonly message: string };

export function isFromWorker(value: unknown): value is FromWorker {
  return typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string';
}

export function isToWorker(value: unknown): value is ToWorker {
  return typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string';
}
