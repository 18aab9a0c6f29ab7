import { InvalidOptionError } from '../errors.js';
import type { RetryStrategy } from '../retry/retry-strategy.js';
import { defaultRetry, NoRetry } from '../retry/strategies.js';
import { rejectUnknownOptions } from '../util/known-options.js';

export type AckPolicy = 'nack_on_error' | 'reject_on_error' | 'manual';

/**
 * How a subscription holds the rows it runs. 'token': a lease written on the row (acquired_token),
 * outliving the claim; 'row-lock': a row lock held by a transaction open for the whole batch,
 * nothing written until the outcomes (architecture/row-lock-mode.md).
 */
export type LeaseMode = 'token' | 'row-lock';
const LEASE_MODES: readonly LeaseMode[] = ['token', 'row-lock'];

/** subscribe()'s leaseTtlMs when none is given; peek() and the dashboard judge leases by it too. */
export const DEFAULT_LEASE_TTL_MS = 60_000;

export interface SubscribeOptions {
  /** Names the subscriber in events, metrics and logs. Keep it bounded (no ids). @default the handler's name, else the queues */
  readonly name?: string;
  /** Handlers running at once. @default 1 */
  readonly concurrency?: number;
  /** Most rows one fetch claims; the local buffer holds at most this many beyond the running ones. @default 10 */
  readonly fetchBatchSize?: number;
  /**
   * How long a claimed row stays leased before another fetch may reclaim it. Must exceed the
   * handler's p99; a buffered row that waited half of it is released unstarted (see
   * architecture/subscriber.md), so keep it above 2 × fetchBatchSize / concurrency × p99. @default 60000
   */
  readonly leaseTtlMs?: number;
  /** First idle wait after an empty fetch; NOTIFY wakes the loop earlier. @default 1000 */
  readonly minPollIntervalMs?: number;
  /** Longest idle wait (the idle backoff's ceiling). @default 10000 */
  readonly maxPollIntervalMs?: number;
  /** A row claimed more often than this ends as `max_deliveries` without running. @default unbounded */
  readonly maxDeliveries?: number;
  /** When a failed handler runs again. @default ExponentialRetry 1 s ×2 up to 5 min, 10 attempts, ±20 % */
  readonly retry?: RetryStrategy;
  /**
   * 'nack_on_error': a throw retries by `retry`; 'reject_on_error': a throw ends the row as
   * `rejected`; 'manual': the handler decides with ctx.ack()/nack()/reject() (returning without
   * deciding counts as nack, never as a silent delete). A transactional delivery whose own
   * statements (BEGIN, the row's lock, the ack, COMMIT) fail for the database's reasons, or whose
   * handler throws because ctx.client did, is retried under every policy, until `retry` and then
   * the default strategy are spent. @default 'nack_on_error'
   */
  readonly ackPolicy?: AckPolicy;
  /** Extend the leases of rows in flight this often, so a slow healthy handler keeps its row. @default off */
  readonly leaseRenewIntervalMs?: number;
  /**
   * Longest a handler may run, from its start: past it, its `ctx.signal` is aborted and its delivery
   * fails with HandlerTimeoutError under the ack policy (a retry by default); what the handler does
   * afterwards is ignored. Without leaseRenewIntervalMs the lease already bounds every run (at
   * leaseTtlMs from its claim), so it can only be shorter than leaseTtlMs. Not for lease: 'row-lock',
   * whose batch leaseTtlMs bounds. @default none: the lease without leaseRenewIntervalMs, unbounded with it
   */
  readonly handlerTimeoutMs?: number;
  /** Archive terminal rows in the DLQ table. @default true when the Outbox has a DLQ table */
  readonly dlq?: boolean;
  /**
   * Run the handler inside a transaction on a connection of the Outbox's pool (`ctx.client`) and
   * commit its writes, its follow-up publishes and the fenced ack together: a run whose lease was
   * lost commits nothing. Each running handler holds a connection: size the pool for
   * concurrency + 2. See architecture/transactional-consume.md. @default false
   */
  readonly transactional?: boolean;
  /**
   * 'row-lock', for short handlers: ceil(concurrency / fetchBatchSize) + 1 loops each claim up to
   * fetchBatchSize rows with FOR UPDATE SKIP LOCKED in a transaction of their own, run their
   * handlers in `concurrency` shared slots and commit the outcomes in the same transaction; no lease
   * is written. A crash rolls the batch back (every row redelivered, deliveries_count not counted);
   * a batch is bounded by leaseTtlMs. Holds a pool connection and a transaction per loop: not for
   * long handlers. See architecture/row-lock-mode.md. @default 'token'
   */
  readonly lease?: LeaseMode;
  /**
   * A transactional subscription's isolation level (`BEGIN ISOLATION LEVEL …`). The transaction's
   * first statement is txoutbox's lock on the claimed row, so a handler cannot change the level
   * with its own `SET TRANSACTION`. @default the session's (read committed unless configured)
   */
  readonly isolationLevel?: IsolationLevel;
}

/** PostgreSQL's isolation levels (read uncommitted behaves as read committed, so it is not offered). */
export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable';
export const ISOLATION_LEVELS: readonly IsolationLevel[] = ['read committed', 'repeatable read', 'serializable'];

export interface ResolvedSubscribeOptions {
  readonly name: string;
  readonly queues: readonly string[];
  readonly concurrency: number;
  readonly fetchBatchSize: number;
  readonly leaseTtlMs: number;
  readonly minPollIntervalMs: number;
  readonly maxPollIntervalMs: number;
  readonly maxDeliveries: number | undefined;
  readonly retry: RetryStrategy;
  readonly ackPolicy: AckPolicy;
  readonly leaseRenewIntervalMs: number | undefined;
  readonly handlerTimeoutMs: number | undefined;
  readonly dlq: boolean;
  readonly transactional: boolean;
  readonly lease: LeaseMode;
  readonly isolationLevel: IsolationLevel | undefined;
  /** Legal but dangerous combinations, for a one-time warning each. */
  readonly warnings: readonly string[];
}

const KNOWN = [
  'name',
  'concurrency',
  'fetchBatchSize',
  'leaseTtlMs',
  'minPollIntervalMs',
  'maxPollIntervalMs',
  'maxDeliveries',
  'retry',
  'ackPolicy',
  'leaseRenewIntervalMs',
  'handlerTimeoutMs',
  'dlq',
  'transactional',
  'lease',
  'isolationLevel',
];
const ACK_POLICIES: readonly AckPolicy[] = ['nack_on_error', 'reject_on_error', 'manual'];
const MAX_QUEUE_LENGTH = 255;
/** Below this time per handler run, subscribe() warns that buffered rows may be released unstarted. */
const MIN_RUN_BUDGET_MS = 1000;

function integer(option: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidOptionError({ option, value, expected: `an integer from ${min} to ${max}` });
  }
  return value;
}

function queuesOf(value: unknown): string[] {
  const queues = Array.isArray(value) ? (value as unknown[]) : [value];
  if (queues.length === 0) {
    throw new InvalidOptionError({ option: 'queues', value, expected: 'a queue name or a non-empty array of them' });
  }
  for (const queue of queues) {
    if (typeof queue !== 'string' || queue.length === 0 || queue.length > MAX_QUEUE_LENGTH) {
      throw new InvalidOptionError({
        option: 'queues',
        value: queue,
        expected: `non-empty strings of at most ${MAX_QUEUE_LENGTH} characters`,
      });
    }
  }
  return [...new Set(queues as string[])];
}

/**
 * Connections a transactional subscription may hold at once besides its handlers' (one each): its
 * claim and its ack DELETE (retry and DLQ writes run after the handler's connection went back).
 */
export const TRANSACTIONAL_OVERHEAD_CONNECTIONS = 2;

/**
 * The warning for a transactional subscription whose Outbox pool cannot hold every running
 * handler's transaction (its own and those of the Outbox's other transactional subscriptions,
 * `otherConcurrencies`) plus a claim and an ack: handlers would wait for connections (each checkout
 * bounded by queryTimeoutMs, then a failed run) and claims behind them. undefined when it fits.
 */
export function transactionalPoolWarning(
  options: ResolvedSubscribeOptions,
  poolMax: number,
  otherConcurrencies: readonly number[] = [],
): string | undefined {
  if (!options.transactional) return undefined;
  const others = otherConcurrencies.reduce((sum, c) => sum + c, 0);
  const needed = others + options.concurrency + TRANSACTIONAL_OVERHEAD_CONNECTIONS;
  if (poolMax >= needed) return undefined;
  const held = others === 0 ? '' : ` (and ${others} for the Outbox's other transactional subscriptions)`;
  return `transactional subscription with concurrency ${options.concurrency} on a pool of ${poolMax} connections: each running handler holds one for its transaction${held}, plus ${TRANSACTIONAL_OVERHEAD_CONNECTIONS} for claims and acks, so the pool needs at least ${needed} (poolSize, or your pool's max); otherwise handlers and claims wait for connections.`;
}

/** The ackPolicy option: subscribe()'s, and txoutbox/testing's handler contexts', which must refuse what it refuses. */
export function resolveAckPolicy(value: unknown): AckPolicy {
  const ackPolicy = value ?? 'nack_on_error';
  if (!ACK_POLICIES.includes(ackPolicy as AckPolicy)) {
    throw new InvalidOptionError({
      option: 'ackPolicy',
      value: ackPolicy,
      expected: ACK_POLICIES.map((p) => `'${p}'`).join(' | '),
    });
  }
  return ackPolicy as AckPolicy;
}

/** Validates subscribe() arguments once; impossible values throw, dangerous ones become warnings. */
export function resolveSubscribeOptions(
  queues: unknown,
  handler: unknown,
  options: unknown,
  outboxHasDlq: boolean,
): ResolvedSubscribeOptions {
  const list = queuesOf(queues);
  if (typeof handler !== 'function') {
    throw new InvalidOptionError({ option: 'handler', value: handler, expected: 'a function (message, ctx) => Promise<void>' });
  }
  if (options !== undefined && (typeof options !== 'object' || options === null || Array.isArray(options))) {
    throw new InvalidOptionError({ option: 'options', value: options, expected: 'an object of subscribe options' });
  }
  const raw = (options ?? {}) as Record<string, unknown>;
  rejectUnknownOptions(raw, 'subscribe', KNOWN);
  const name = raw.name ?? ((handler as { name?: string }).name || list.join(','));
  if (typeof name !== 'string' || name.length === 0 || name.length > 255) {
    throw new InvalidOptionError({ option: 'name', value: name, expected: 'a non-empty string of at most 255 characters' });
  }
  const concurrency = integer('concurrency', raw.concurrency, 1, 1, 10_000);
  const fetchBatchSize = integer('fetchBatchSize', raw.fetchBatchSize, 10, 1, 10_000);
  const leaseTtlMs = integer('leaseTtlMs', raw.leaseTtlMs, DEFAULT_LEASE_TTL_MS, 1, 24 * 3600 * 1000);
  const minPollIntervalMs = integer('minPollIntervalMs', raw.minPollIntervalMs, 1000, 1, 3600 * 1000);
  const maxPollIntervalMs = integer(
    'maxPollIntervalMs',
    raw.maxPollIntervalMs,
    Math.max(10_000, minPollIntervalMs),
    1,
    3600 * 1000,
  );
  if (maxPollIntervalMs < minPollIntervalMs) {
    throw new InvalidOptionError({
      option: 'maxPollIntervalMs',
      value: maxPollIntervalMs,
      expected: `a value >= minPollIntervalMs (${minPollIntervalMs})`,
      fix: 'The idle wait grows from minPollIntervalMs up to maxPollIntervalMs.',
    });
  }
  const maxDeliveries =
    raw.maxDeliveries === undefined ? undefined : integer('maxDeliveries', raw.maxDeliveries, 0, 1, 1_000_000);
  const retry: unknown = raw.retry ?? defaultRetry();
  if (typeof retry !== 'object' || retry === null || typeof (retry as Partial<RetryStrategy>).nextDelayMs !== 'function') {
    throw new InvalidOptionError({
      option: 'retry',
      value: retry,
      expected: 'a retry strategy (an object with nextDelayMs(context))',
      fix: 'Use new ExponentialRetry({...}), ConstantRetry, LinearRetry, NoRetry, or your own.',
    });
  }
  const ackPolicy = resolveAckPolicy(raw.ackPolicy);
  const leaseRenewIntervalMs =
    raw.leaseRenewIntervalMs === undefined
      ? undefined
      : integer('leaseRenewIntervalMs', raw.leaseRenewIntervalMs, 0, 1, leaseTtlMs - 1);
  const dlq = raw.dlq ?? outboxHasDlq;
  if (typeof dlq !== 'boolean') throw new InvalidOptionError({ option: 'dlq', value: dlq, expected: 'a boolean' });
  if (dlq && !outboxHasDlq) {
    throw new InvalidOptionError({
      option: 'dlq',
      value: true,
      expected: 'false when the Outbox has dlqTable: false',
      fix: 'Give the Outbox a dlqTable, or drop dlq: true.',
    });
  }
  const transactional = raw.transactional ?? false;
  if (typeof transactional !== 'boolean') {
    throw new InvalidOptionError({
      option: 'transactional',
      value: transactional,
      expected: 'a boolean',
      fix: 'transactional: true runs the handler in a transaction committed with its ack (ctx.client).',
    });
  }
  const lease = leaseModeOf(raw.lease, transactional, leaseRenewIntervalMs);
  const handlerTimeoutMs = handlerTimeoutOf(raw.handlerTimeoutMs, lease, leaseTtlMs, leaseRenewIntervalMs);
  const isolationLevel = isolationLevelOf(raw.isolationLevel, transactional);

  const warnings: string[] = [];
  // The two lease warnings below are about token leases (an expiry within an idle wait, buffered
  // rows released unstarted): a row-lock subscription has neither.
  if (lease === 'token' && leaseTtlMs <= maxPollIntervalMs) {
    warnings.push(
      `leaseTtlMs (${leaseTtlMs}) <= maxPollIntervalMs (${maxPollIntervalMs}): a lease can expire within one idle wait; recommended leaseTtlMs >= 2 × maxPollIntervalMs + the handler's p99.`,
    );
  }
  // A buffered row waits up to ceil(fetchBatchSize / concurrency) runs for a slot and is released
  // unstarted once it waited half its lease (subscription.ts): below a second a run, that is likely.
  const runsAhead = Math.ceil(fetchBatchSize / concurrency);
  const runBudgetMs = Math.floor(leaseTtlMs / 2 / runsAhead);
  if (lease === 'token' && leaseRenewIntervalMs === undefined && runBudgetMs < MIN_RUN_BUDGET_MS) {
    warnings.push(
      `leaseTtlMs (${leaseTtlMs}) leaves each handler run ${runBudgetMs} ms: a buffered row waits for up to ${runsAhead} runs (fetchBatchSize ${fetchBatchSize} / concurrency ${concurrency}) and is released unstarted once it waited half its lease. Raise leaseTtlMs, raise concurrency, lower fetchBatchSize, or set leaseRenewIntervalMs.`,
    );
  }
  // Renewal resets a held row's lease only every interval: above half the lease, a buffered row
  // still reaches the half-lease age between renewals and is released unstarted, and a run's first
  // renewal can come after its lease ran out (the timer ticks from start(), not from its claim).
  if (lease === 'token' && leaseRenewIntervalMs !== undefined && leaseRenewIntervalMs > leaseTtlMs / 2) {
    warnings.push(
      `leaseRenewIntervalMs (${leaseRenewIntervalMs}) > leaseTtlMs / 2 (${leaseTtlMs / 2}): a lease can run out before its first renewal, and buffered rows are released unstarted between renewals. Renew at most every leaseTtlMs / 3 (here ${Math.floor(leaseTtlMs / 3)}).`,
    );
  }
  if (maxDeliveries !== undefined && retry instanceof NoRetry) {
    warnings.push(
      'maxDeliveries is set with NoRetry: the first failure already ends the row, so the delivery cap only counts lease expiries (and, in a transactional subscription, the database faults it retries).',
    );
  }
  return {
    name,
    queues: list,
    concurrency,
    fetchBatchSize,
    leaseTtlMs,
    minPollIntervalMs,
    maxPollIntervalMs,
    maxDeliveries,
    retry: retry as RetryStrategy,
    ackPolicy,
    leaseRenewIntervalMs,
    handlerTimeoutMs,
    dlq,
    transactional,
    lease,
    isolationLevel,
    warnings,
  };
}

/** The `lease` option, and the combinations a row-lock subscription cannot serve. */
function leaseModeOf(value: unknown, transactional: boolean, leaseRenewIntervalMs: number | undefined): LeaseMode {
  const lease = value ?? 'token';
  if (!LEASE_MODES.includes(lease as LeaseMode)) {
    throw new InvalidOptionError({
      option: 'lease',
      value: lease,
      expected: LEASE_MODES.map((m) => `'${m}'`).join(' | '),
      fix: "'token' (the default) writes a lease on each claimed row; 'row-lock' holds the batch's rows locked in a transaction instead (short handlers only, architecture/row-lock-mode.md).",
    });
  }
  if (lease === 'row-lock' && transactional) {
    throw new InvalidOptionError({
      option: 'lease',
      value: lease,
      expected: "'token' with transactional: true",
      fix: "A row-lock batch shares one transaction between its handlers, so one handler's failure would roll back the others' writes. Drop transactional (row-lock), or keep transactional with lease: 'token'.",
    });
  }
  if (lease === 'row-lock' && leaseRenewIntervalMs !== undefined) {
    throw new InvalidOptionError({
      option: 'leaseRenewIntervalMs',
      value: leaseRenewIntervalMs,
      expected: "undefined with lease: 'row-lock' (there is no lease to renew)",
      fix: "A row-lock batch is bounded by leaseTtlMs instead. Handlers that need renewal are long: use lease: 'token'.",
    });
  }
  return lease as LeaseMode;
}

/** Longest handlerTimeoutMs: a day, as long as a delay may be. */
const MAX_HANDLER_TIMEOUT_MS = 86_400_000;

/** `handlerTimeoutMs`: only where it bounds something the lease does not already bound sooner. */
function handlerTimeoutOf(
  value: unknown,
  lease: LeaseMode,
  leaseTtlMs: number,
  leaseRenewIntervalMs: number | undefined,
): number | undefined {
  if (value === undefined) return undefined;
  if (lease === 'row-lock') {
    throw new InvalidOptionError({
      option: 'handlerTimeoutMs',
      value,
      expected: "undefined with lease: 'row-lock'",
      fix: 'A row-lock batch, and every handler in it, is bounded by leaseTtlMs: lower leaseTtlMs instead.',
    });
  }
  const timeoutMs = integer('handlerTimeoutMs', value, 0, 1, MAX_HANDLER_TIMEOUT_MS);
  if (leaseRenewIntervalMs === undefined && timeoutMs > leaseTtlMs) {
    throw new InvalidOptionError({
      option: 'handlerTimeoutMs',
      value,
      expected: `at most leaseTtlMs (${leaseTtlMs}) without leaseRenewIntervalMs`,
      fix: 'Without renewal the lease ends every run at leaseTtlMs from its claim: set leaseRenewIntervalMs for runs that may take longer, or raise leaseTtlMs.',
    });
  }
  return timeoutMs;
}

/**
 * A row-lock subscription's loops, each holding a connection and a transaction for its batch:
 * enough batches to fill `concurrency` handler slots, plus one claiming or committing while the
 * others' handlers run (row-lock-subscription.ts).
 */
export function rowLockLoops(options: Pick<ResolvedSubscribeOptions, 'concurrency' | 'fetchBatchSize'>): number {
  return Math.ceil(options.concurrency / options.fetchBatchSize) + 1;
}

/**
 * Connections a subscription holds for whole batches or runs: a row-lock one its loops, a
 * transactional one its concurrency (plus its claims and acks, transactionalPoolWarning).
 */
export function heldConnections(options: ResolvedSubscribeOptions): number {
  if (options.lease === 'row-lock') return rowLockLoops(options);
  return options.transactional ? options.concurrency : 0;
}

/** The warning for a row-lock subscription whose pool cannot hold its loops' connections (and the Outbox's other such holders'). */
export function rowLockPoolWarning(
  options: ResolvedSubscribeOptions,
  poolMax: number,
  otherHeld: readonly number[] = [],
): string | undefined {
  if (options.lease !== 'row-lock') return undefined;
  const loops = rowLockLoops(options);
  const needed = otherHeld.reduce((sum, c) => sum + c, 0) + loops;
  if (poolMax >= needed) return undefined;
  return `lease: 'row-lock' with ${loops} loops (ceil(concurrency / fetchBatchSize) + 1) on a pool of ${poolMax} connections: each loop holds a connection for its whole batch, and the Outbox's row-lock and transactional subscriptions need ${needed}; otherwise loops wait for connections. Raise poolSize (or your pool's max) to at least ${needed}.`;
}

function isolationLevelOf(value: unknown, transactional: boolean): IsolationLevel | undefined {
  if (value === undefined) return undefined;
  if (!ISOLATION_LEVELS.includes(value as IsolationLevel)) {
    throw new InvalidOptionError({
      option: 'isolationLevel',
      value,
      expected: ISOLATION_LEVELS.map((level) => `'${level}'`).join(', '),
    });
  }
  if (!transactional) {
    throw new InvalidOptionError({
      option: 'isolationLevel',
      value,
      expected: 'only with transactional: true',
      fix: 'Add transactional: true (the handler then runs in a transaction of that level on ctx.client), or drop isolationLevel.',
    });
  }
  return value as IsolationLevel;
}
