/**
 * The IPC between the harness and a chaos worker (one Outbox consuming the chain queue, or relaying
 * it to a broker, in a process of its own so that a stop() that hangs can be timed, reported and
 * killed without taking the harness with it).
 */

/**
 * A relay instead of the chain handler: `outbox.relay(queue, <factory>(options))` with a sink from
 * the product's `txoutbox/relay` (src/relay/index.ts). Options are JSON (URLs, names, timeouts).
 */
export interface RelaySpec {
  readonly factory: 'natsSink' | 'redisStreamSink' | 'rabbitmqSink';
  readonly options: Readonly<Record<string, string | number | boolean>>;
}

export interface WorkerSpec {
  readonly productRoot: string;
  /** What the Outbox connects to: the server, or the TCP proxy in front of it. */
  readonly databaseUrl: string;
  /** What the handler's own pool connects to (the application's connections see the same faults). */
  readonly appDatabaseUrl: string;
  /** The Outbox's `transactionPooling` (databaseUrl is a PgBouncer in transaction mode). */
  readonly transactionPooling?: boolean;
  /** The Outbox's `listenConnectionString`: LISTEN on a direct connection while the rest goes through PgBouncer. */
  readonly listenDatabaseUrl?: string;
  readonly poolSize: number;
  readonly gracefulTimeoutMs: number;
  readonly handlerDelayMs: number;
  /** The handler's delay is a `pg_sleep` in its transaction (chain.ts sleepOnServer). */
  readonly handlerSleepsOnServer?: boolean;
  /** subscribe() options (JSON only: the retry strategy stays the default, the relay's own for a relay). */
  readonly subscribe: Readonly<Record<string, number | string | boolean>>;
  /** Relay the queue to a broker instead of handling it (no application pool, no chain handler). */
  readonly relay?: RelaySpec;
}

export type ToWorker =
  { readonly type: 'start'; readonly spec: WorkerSpec } | { readonly type: 'stop' } | { readonly type: 'ping' };

/**
 * Counts of recorder events (`relayed` also by outcome: `relayed:failed`…), when the last claim
 * finished (epoch ms), and a relay sink's own `stats` (NATS: acks with `duplicate: true`).
 */
export interface WorkerHeartbeat {
  readonly type: 'heartbeat';
  readonly lastFetchedAt: number | null;
  readonly events: Readonly<Record<string, number>>;
  readonly sinkStats?: Readonly<Record<string, number>>;
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
