import { batchHeaderLines, withInjectedHeaders } from '../envelope/build-headers.js';
import { CORRELATION_ID_HEADER } from '../envelope/headers.js';
import { InvalidOptionError } from '../errors.js';
import type { MiddlewareChain } from '../instrumentation/middleware-chain.js';
import type { Emit } from '../instrumentation/recorders.js';
import { observePublish } from '../producer/observe-publish.js';
import { type EncodedBatch, prepareBatch, prepareBody } from '../producer/prepare-bodies.js';
import { assertBatchBodies } from '../producer/publish.js';
import {
  type PublishBatchOptions,
  type PublishOptions,
  refuseUnstorable,
  resolveCancelTimerOptions,
  type ResolvedPublishOptions,
  resolvePublishOptions,
  validateQueue,
} from '../producer/publish-options.js';
import type { BodySchemas } from '../typed-events/body-schemas.js';
import type { TestClock } from './clock.js';
import type { MemoryRow } from './memory-row.js';
import { type MemoryTable, releasedByCancel } from './memory-table.js';
import type { TestTransaction } from './test-transaction.js';

/** Runs one producer call's writes in a transaction: the caller's, or one of its own (autocommit). */
export type InTransaction = <T>(write: (transaction: TestTransaction) => T) => Promise<T>;

export interface MemoryProducerContext {
  readonly table: MemoryTable;
  /** The `schemas` option: bodies are checked before any insert, as the real producer does. */
  readonly schemas: BodySchemas | undefined;
  readonly clock: TestClock;
  readonly middlewares: MiddlewareChain;
  readonly emit: Emit;
  /** Every transaction not yet ended: a timerId staged in one is taken for all (the unique index). */
  readonly openTransactions: () => Iterable<TestTransaction>;
  /** Checks the target as the real producer does (NotInTransactionError) and returns how to write through it. */
  readonly transactionOf: (operation: string, target: unknown, autocommit: boolean) => InTransaction;
}

/** The publish's own due time (ownActivation). */
function ownActivation(resolved: ResolvedPublishOptions, nowMs: number): number {
  return resolved.activateAt?.getTime() ?? nowMs + (resolved.activateInMs ?? 0);
}

/** The row's first due time: the publish's own, but never before its key's previous row (keyedNextAttempt). */
function nextAttemptAt(resolved: ResolvedPublishOptions, nowMs: number, previousOfKey: MemoryRow | undefined): number {
  const own = ownActivation(resolved, nowMs);
  return previousOfKey === undefined ? own : Math.max(own, previousOfKey.nextAttemptAt);
}

function lastOfKey(rows: readonly MemoryRow[], queue: string, key: string | undefined): MemoryRow | undefined {
  if (key === undefined) return undefined;
  return rows.filter((row) => row.queue === queue && row.orderingKey === key).at(-1);
}

/** A batch's rows as the real statement stores them: each payload's own copy, the same headers JSON. */
function batchMessages(batch: EncodedBatch, resolved: ResolvedPublishOptions, injected: Readonly<Record<string, string>>) {
  const lines = batchHeaderLines(resolved.headers, injected, batch.contentTypes, batch.correlationIds).split('\n');
  let start = 0;
  return batch.lengths.map((length, i) => {
    const payload = Buffer.from(batch.payloads.subarray(start, start + length));
    start += length;
    return { payload, headers: JSON.parse(lines[i] ?? '{}') as Record<string, string> };
  });
}

function newRow(
  ctx: MemoryProducerContext,
  queue: string,
  message: { readonly payload: Buffer; readonly headers: Record<string, string> },
  resolved: ResolvedPublishOptions,
  previousOfKey: MemoryRow | undefined,
): MemoryRow {
  const nowMs = ctx.clock.nowMs();
  return {
    seq: ctx.table.drawSeq(),
    queue,
    payload: message.payload,
    headers: message.headers,
    createdAt: nowMs,
    nextAttemptAt: nextAttemptAt(resolved, nowMs, previousOfKey),
    firstAttemptAt: null,
    lastAttemptAt: null,
    attemptsCount: 0,
    deliveriesCount: 0,
    acquiredAt: null,
    timerId: resolved.timerId ?? null,
    orderingKey: resolved.orderingKey ?? null,
    activateAt: resolved.orderingKey === undefined ? null : ownActivation(resolved, nowMs),
    lastException: null,
    lastExceptionType: null,
  };
}

/** The unique index on (queue, timer_id): a committed row this transaction does not delete, or any open transaction's insert. */
function timerTaken(ctx: MemoryProducerContext, transaction: TestTransaction, queue: string, timerId: string): boolean {
  const same = (row: MemoryRow) => row.queue === queue && row.timerId === timerId;
  if (ctx.table.rows().some((row) => same(row) && !transaction.deletes(row.seq))) return true;
  for (const open of ctx.openTransactions()) if (open.inserted.some(same)) return true;
  return false;
}

/** publish() of the test outbox: the real option checks, envelope and middlewares, an in-memory insert. */
export async function memoryPublish(
  ctx: MemoryProducerContext,
  target: unknown,
  queue: unknown,
  body: unknown,
  options?: PublishOptions,
): Promise<string | null> {
  const resolved = resolvePublishOptions(options, false);
  const inTransaction = ctx.transactionOf('publish', target, resolved.autocommit);
  const validQueue = validateQueue(queue);
  const encoded = await prepareBody(ctx, validQueue, body, resolved);
  const scope = {
    queue: validQueue,
    messageCount: 1,
    batch: false,
    sizeBytes: encoded.payload.length,
    correlationId: encoded.headers[CORRELATION_ID_HEADER],
  };
  const { ids } = await observePublish(ctx.middlewares, ctx.emit, scope, (injected) =>
    inTransaction((transaction) => {
      const previous = lastOfKey(transaction.visibleRows(), validQueue, resolved.orderingKey);
      // The id is drawn before the conflict check, as the identity default is formed before ON
      // CONFLICT DO NOTHING drops the row: a taken timerId leaves a gap (the contract suite saw it).
      const message = {
        payload: encoded.payload,
        headers: JSON.parse(withInjectedHeaders(encoded.headers, injected)) as Record<string, string>,
      };
      const row = newRow(ctx, validQueue, message, resolved, previous);
      if (resolved.timerId !== undefined && timerTaken(ctx, transaction, validQueue, resolved.timerId)) {
        return { ids: [null], inserted: 0 };
      }
      transaction.insert(row);
      return { ids: [String(row.seq)], inserted: 1 };
    }),
  );
  return ids[0] ?? null;
}

/** publishBatch() of the test outbox: every row or none, in the order of `bodies`. */
export async function memoryPublishBatch(
  ctx: MemoryProducerContext,
  target: unknown,
  queue: unknown,
  bodies: unknown,
  options?: PublishBatchOptions,
): Promise<string[]> {
  const resolved = resolvePublishOptions(options, true);
  const inTransaction = ctx.transactionOf('publishBatch', target, resolved.autocommit);
  const validQueue = validateQueue(queue);
  assertBatchBodies(bodies);
  if (bodies.length === 0) return [];
  const batch = await prepareBatch(ctx, validQueue, bodies, resolved);
  const scope = {
    queue: validQueue,
    messageCount: bodies.length,
    batch: true,
    sizeBytes: batch.payloads.length,
    correlationId: resolved.correlationId ?? resolved.headers[CORRELATION_ID_HEADER],
  };
  const { ids } = await observePublish(ctx.middlewares, ctx.emit, scope, (injected) =>
    inTransaction((transaction) => {
      // One statement: every row inherits from the key's last row before it, not from each other.
      const previous = lastOfKey(transaction.visibleRows(), validQueue, resolved.orderingKey);
      const rows = batchMessages(batch, resolved, injected).map((message) =>
        newRow(ctx, validQueue, message, resolved, previous),
      );
      for (const row of rows) transaction.insert(row);
      return { ids: rows.map((row) => String(row.seq)), inserted: rows.length };
    }),
  );
  return ids as string[];
}

/** cancelTimer() of the test outbox: deletes the unleased row of (queue, timerId) the transaction sees. */
export async function memoryCancelTimer(
  ctx: MemoryProducerContext,
  target: unknown,
  queue: unknown,
  timerId: unknown,
  options?: unknown,
): Promise<boolean> {
  const inTransaction = ctx.transactionOf('cancelTimer', target, resolveCancelTimerOptions(options).autocommit);
  const validQueue = validateQueue(queue);
  if (typeof timerId !== 'string' || timerId.length === 0) {
    throw new InvalidOptionError({ option: 'timerId', value: timerId, expected: 'a non-empty string' });
  }
  refuseUnstorable('timerId', timerId);
  return await inTransaction((transaction) => {
    const seen = transaction.visibleRows();
    const row = seen.find(
      (candidate) => candidate.queue === validQueue && candidate.timerId === timerId && candidate.acquiredAt === null,
    );
    // A row another open transaction holds locked is skipped (FOR UPDATE SKIP LOCKED): not found.
    if (row === undefined || ctx.table.lockedByOther(row.seq, transaction)) return false;
    transaction.delete(row);
    // One statement with the delete, on the same view: rows this transaction published behind the
    // timer are released too, and its later publishes under the key see the released times.
    for (const [seq, at] of releasedByCancel(row, seen, ctx.clock.nowMs())) transaction.release(seq, at);
    return true;
  });
}
