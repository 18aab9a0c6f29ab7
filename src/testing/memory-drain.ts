import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';

import { DrainLimitError, InvalidOptionError } from '../errors.js';
import type { Emit } from '../instrumentation/recorders.js';
import type { PublishOptions } from '../producer/publish-options.js';
import { deliverAsPromise, type DeliverDeps } from '../subscriber/deliver.js';
import { DeliverySignal } from '../subscriber/delivery-signal.js';
import type { Lease } from '../subscriber/lease.js';
import { rejectUnknownOptions } from '../util/known-options.js';
import type { TestClock } from './clock.js';
import { type MemoryRow, toClaimedRecord } from './memory-row.js';
import type { MemoryTable } from './memory-table.js';
import { memoryDeliveryTransactions } from './memory-transactions.js';
import type { TestTransaction } from './test-transaction.js';

export interface DrainOptions {
  /**
   * When nothing is due, move the clock to the next scheduled row (a retry, a delayed message, a
   * timer) and go on, until no row of a subscribed queue is left or none can become due by time.
   * @default false: only what is due at the current clock runs
   */
  readonly advanceClock?: boolean;
  /** Deliveries this drain makes at most before it throws DrainLimitError. @default the outbox's maxDrainSteps */
  readonly maxSteps?: number;
}

export interface DrainResult {
  /** Deliveries made (handler runs, plus rows ended by maxDeliveries without one). */
  readonly delivered: number;
  /** The clock when the drain ended. */
  readonly now: Date;
}

/** One subscribe() of the test outbox: its queues and what the real deliver() needs. */
export interface MemorySubscription {
  readonly queues: ReadonlySet<string>;
  readonly deps: DeliverDeps;
}

export interface DrainContext {
  readonly table: MemoryTable;
  readonly clock: TestClock;
  readonly emit: Emit;
  readonly subscriptions: readonly MemorySubscription[];
  readonly maxDrainSteps: number;
  /** A new transaction of the outbox: a transactional delivery's follow-ups go in it. */
  readonly openTransaction: () => TestTransaction;
  readonly publishIn: (tx: TestTransaction, queue: string, body: unknown, options: PublishOptions) => Promise<string | null>;
}

const KNOWN = ['advanceClock', 'maxSteps'];

/**
 * drain()'s options, checked as the real Outbox checks its own: unchecked, `{ advanceclock: true }`
 * ran only what was due now, and the test went on without its delayed rows, silently.
 */
function resolveDrainOptions(options: unknown, defaultMaxSteps: number): { advanceClock: boolean; maxSteps: number } {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new InvalidOptionError({
      option: 'options',
      value: options,
      expected: 'an object of drain options ({ advanceClock, maxSteps })',
    });
  }
  rejectUnknownOptions(options, 'drain', KNOWN);
  const { advanceClock = false, maxSteps = defaultMaxSteps } = options as DrainOptions;
  if (typeof advanceClock !== 'boolean') {
    throw new InvalidOptionError({
      option: 'advanceClock',
      value: advanceClock,
      expected: 'a boolean',
      fix: 'Pass true to move the clock to each scheduled row until none is left; leave it out to run only what is due now.',
    });
  }
  if (typeof maxSteps !== 'number' || !Number.isInteger(maxSteps) || maxSteps < 1) {
    throw new InvalidOptionError({ option: 'maxSteps', value: maxSteps, expected: 'an integer >= 1' });
  }
  return { advanceClock, maxSteps };
}

/**
 * drain(): each step claims the row the claim statement would take first — (next_attempt_at, id)
 * order, due by the clock, its key's oldest row — and delivers it through the real delivery path,
 * until nothing is due (with `advanceClock`, moving the clock to the next scheduled row until none
 * is left). Throws DrainLimitError after `maxSteps` deliveries while rows are still due: a handler
 * that keeps publishing into its own queue fails the test instead of hanging it.
 */
export async function drainSubscriptions(ctx: DrainContext, options: unknown): Promise<DrainResult> {
  const { advanceClock, maxSteps } = resolveDrainOptions(options, ctx.maxDrainSteps);
  const queues = new Set(ctx.subscriptions.flatMap((s) => [...s.queues]));
  let delivered = 0;
  for (;;) {
    const row = ctx.table.nextDue(queues, ctx.clock.nowMs());
    if (row === undefined) {
      const at = advanceClock ? ctx.table.nextScheduledAt(queues, ctx.clock.nowMs()) : undefined;
      if (at === undefined) break;
      ctx.clock.set(at);
      continue;
    }
    if (delivered >= maxSteps) throw new DrainLimitError(maxSteps, ctx.table.pending(queues));
    delivered += 1;
    await deliverRow(ctx, row);
  }
  return { delivered, now: ctx.clock.now() };
}

async function deliverRow(ctx: DrainContext, row: MemoryRow): Promise<void> {
  // The first subscription of the queue takes it: several subscriptions of one queue compete in
  // the real outbox, and which one wins is not part of its contract.
  const subscription = ctx.subscriptions.find((s) => s.queues.has(row.queue));
  if (subscription === undefined) return;
  ctx.table.claim(row, ctx.clock.nowMs());
  const { deps } = subscription;
  ctx.emit?.({ type: 'fetched', queue: row.queue, subscriber: deps.options.name, count: 1 });
  const lease: Lease = { record: toClaimedRecord(row), token: randomUUID(), leasedAt: performance.now() };
  await deliverAsPromise(lease, new DeliverySignal(), () => false, deps.options.transactional ? inTransactions(ctx, deps) : deps);
}

/**
 * transactional: true — the real transactional path, with transactions of the test outbox: the
 * run's follow-ups (ctx.publish, or publish(ctx.client, …)) commit with its ack inside the consume
 * chain and are rolled back with a retry or a terminal outcome (memory-transactions.ts).
 */
function inTransactions(ctx: DrainContext, deps: DeliverDeps): DeliverDeps {
  return {
    ...deps,
    followUp: (client, queue, body, publishOptions) =>
      ctx.publishIn(client as unknown as TestTransaction, queue, body, publishOptions),
    transactions: memoryDeliveryTransactions(ctx.openTransaction, deps.writer),
  };
}
