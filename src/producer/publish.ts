import { batchHeaderLines, withInjectedHeaders } from '../envelope/build-headers.js';
import { CORRELATION_ID_HEADER } from '../envelope/headers.js';
import { errorMessage, InvalidOptionError } from '../errors.js';
import type { MiddlewareChain } from '../instrumentation/middleware-chain.js';
import type { Emit } from '../instrumentation/recorders.js';
import { type DueAnswer, payloadFor } from '../queues/channel-signal.js';
import type { TableName } from '../schema/identifiers.js';
import { unmigratedSchemaError } from '../schema/unmigrated-schema.js';
import type { BodySchemas } from '../typed-events/body-schemas.js';
import type { Logger } from '../util/logger.js';
import type { Statement } from '../util/statement.js';
import { assertTransactional } from './executor.js';
import type { CallTransaction } from './in-transaction-query.js';
import { observePublish } from './observe-publish.js';
import { type EncodedBatch, prepareBatch, prepareBody } from './prepare-bodies.js';
import {
  type PublishBatchOptions,
  type PublishOptions,
  refuseUnstorable,
  resolveCancelTimerOptions,
  type ResolvedPublishOptions,
  resolvePublishOptions,
  validateQueue,
} from './publish-options.js';
import type { ProducerSql } from './sql.js';
import { openPort, transactionAtCall, type TransactionPort, type WakeRoute } from './transaction-port.js';
import { type NotifyMode, planWake, wakeAfterStatement } from './wake-after-commit.js';
import type { WakeNotifier } from './wake-notifier.js';

/** What the producer needs from its Outbox, resolved once at construction. */
export interface ProducerContext {
  readonly sql: ProducerSql;
  readonly channel: string;
  /** false when the caller's connections cannot hold prepared statements (PgBouncer transaction mode). */
  readonly preparedStatements: boolean;
  readonly middlewares: MiddlewareChain;
  readonly emit: Emit;
  /** How publishes wake listeners (architecture/decisions/0004-wake-up-after-commit.md). */
  readonly notify: NotifyMode;
  readonly notifier: WakeNotifier;
  /** The Outbox's `schemas`; undefined when it has none (then no body is validated, at no cost). */
  readonly schemas: BodySchemas | undefined;
  /** The outbox table, named by SchemaNotMigratedError. */
  readonly table: TableName;
  readonly logger: Logger;
}

/** The most rows one publishBatch() may insert: bounds the statement's memory on both ends. */
export const MAX_BATCH_SIZE = 100_000;

/** publishBatch()'s `bodies`: an array of at most MAX_BATCH_SIZE (the real outbox's and txoutbox/testing's check). */
export function assertBatchBodies(bodies: unknown): asserts bodies is unknown[] {
  if (!Array.isArray(bodies)) {
    throw new InvalidOptionError({ option: 'bodies', value: bodies, expected: 'an array of message bodies' });
  }
  if (bodies.length > MAX_BATCH_SIZE) {
    throw new InvalidOptionError({
      option: 'bodies',
      value: `${bodies.length} bodies`,
      expected: `at most ${MAX_BATCH_SIZE} bodies per publishBatch()`,
      fix: 'Split the batch; several publishBatch() calls in one transaction are still atomic.',
    });
  }
}

/** Opens the caller's transaction for one call; decides there whether an after-commit route is wanted. */
function port(
  ctx: ProducerContext,
  target: Parameters<typeof openPort>[0],
  operation: string,
  options: { readonly autocommit: boolean },
  call: CallTransaction | undefined,
): Promise<TransactionPort> {
  return openPort(
    target,
    ctx.preparedStatements,
    ctx.notify === 'after-commit' && !ctx.notifier.stopped,
    options.autocommit ? undefined : operation,
    call,
  );
}

/**
 * Runs one producer statement in the caller's transaction. A schema older than this code (deployed
 * before its migrations) fails with SchemaNotMigratedError naming the migration, not with the data
 * layer's bare undefined_column.
 */
async function runStatement(
  ctx: ProducerContext,
  transaction: TransactionPort,
  operation: string,
  stmt: Statement,
  values: unknown[],
): Promise<readonly Record<string, unknown>[]> {
  try {
    return await transaction.run(stmt, values);
  } catch (error) {
    throw unmigratedSchemaError(error, ctx.table, operation) ?? error;
  }
}

/** activateAt travels as ISO text: every driver passes a string the same way (src/producer/sql.ts). */
function activation(options: ResolvedPublishOptions): [string | null, number] {
  return [options.activateAt?.toISOString() ?? null, options.activateInMs ?? 0];
}

/**
 * After an afterCommit statement: the queue's wake-up when its row is due, or the announcement of
 * when it will be (queues/channel-signal.ts), so the consumers of other processes run it then
 * rather than at their next poll. No row (a timer conflict): nothing. The delay is the database's
 * (activateAt is compared with its clock, and a keyed row may wait for its key's previous one).
 */
function wakeAfter(route: WakeRoute, notifier: WakeNotifier, queue: string, answer: DueAnswer | undefined): void {
  const payload = payloadFor(queue, answer);
  if (payload !== undefined) wakeAfterStatement(route, notifier, payload);
}

/**
 * Inserts one message through the caller's executor (their open transaction) and wakes the
 * queue's subscribers when it is due: after the caller's COMMIT by default, or inside the
 * transaction (see planWake). Returns the row id, or null when `timerId` is already live.
 * Never begins, commits or rolls back.
 */
export async function publish(
  ctx: ProducerContext,
  executor: unknown,
  queue: unknown,
  body: unknown,
  options?: PublishOptions,
): Promise<string | null> {
  const resolved = resolvePublishOptions(options, false);
  assertTransactional('publish', executor, resolved.autocommit);
  // Now, before the body is encoded and the middlewares run: the transaction the call is made in.
  const call = transactionAtCall(executor, resolved.autocommit);
  try {
    const validQueue = validateQueue(queue);
    // Before any statement: an invalid or unencodable body leaves the caller's transaction untouched.
    const encoded = await prepareBody(ctx, validQueue, body, resolved);
    const scope = {
      queue: validQueue,
      messageCount: 1,
      batch: false,
      sizeBytes: encoded.payload.length,
      correlationId: encoded.headers[CORRELATION_ID_HEADER],
    };
    const { ids } = await observePublish(ctx.middlewares, ctx.emit, scope, async (injected) => {
      const transaction = await port(ctx, executor, 'publish', resolved, call);
      const values: unknown[] = [
        validQueue,
        encoded.payload,
        withInjectedHeaders(encoded.headers, injected),
        ...activation(resolved),
      ];
      const inTransaction = planWake(ctx.notify, transaction.wake, ctx.notifier) === 'in-transaction';
      if (inTransaction) values.push(ctx.channel);
      if (resolved.timerId !== undefined) values.push(resolved.timerId);
      values.push(resolved.orderingKey ?? null);
      const sql = inTransaction ? ctx.sql : ctx.sql.afterCommit;
      const stmt = resolved.timerId === undefined ? sql.publish : sql.publishTimer;
      const row = (await runStatement(ctx, transaction, 'publish', stmt, values))[0] as ({ id: string } & DueAnswer) | undefined;
      if (!inTransaction) wakeAfter(transaction.wake, ctx.notifier, validQueue, row);
      const id = row?.id ?? null;
      return { ids: [id], inserted: id === null ? 0 : 1 };
    });
    return ids[0] ?? null;
  } finally {
    call?.release();
  }
}

/**
 * publishBatch's $2–$5 (src/producer/sql.ts, BATCH_ROWS): the payloads as one bytea, where each
 * starts and how long it is, and each row's headers as JSON text, one per line.
 */
function batchColumns(
  batch: EncodedBatch,
  headers: ResolvedPublishOptions['headers'],
  injected: Readonly<Record<string, string>>,
): [Buffer, string, string, string] {
  let starts = '';
  let lengths = '';
  let start = 1;
  for (let i = 0; i < batch.lengths.length; i += 1) {
    const length = batch.lengths[i] ?? 0;
    const comma = i === 0 ? '' : ',';
    starts += `${comma}${start}`;
    lengths += `${comma}${length}`;
    start += length;
  }
  return [batch.payloads, starts, lengths, batchHeaderLines(headers, injected, batch.contentTypes, batch.correlationIds)];
}

/** publishBatch's one result row (src/producer/sql.ts): the ids joined by commas in publish order, and whether any row is due. */
interface BatchResult extends DueAnswer {
  readonly ids: string | null;
}

/**
 * Inserts many messages to one queue with ONE multi-row statement (and at most one wake-up).
 * Returns their ids in the order of `bodies`. Each message gets its own correlation id unless
 * one is given for all.
 */
export async function publishBatch(
  ctx: ProducerContext,
  executor: unknown,
  queue: unknown,
  bodies: unknown,
  options?: PublishBatchOptions,
): Promise<string[]> {
  const resolved = resolvePublishOptions(options, true);
  assertTransactional('publishBatch', executor, resolved.autocommit);
  // Now, before the body is encoded and the middlewares run: the transaction the call is made in.
  const call = transactionAtCall(executor, resolved.autocommit);
  try {
    const validQueue = validateQueue(queue);
    assertBatchBodies(bodies);
    if (bodies.length === 0) return [];
    // Every body, before any statement: an invalid one leaves the caller's transaction untouched.
    const batch = await prepareBatch(ctx, validQueue, bodies, resolved);
    const scope = {
      queue: validQueue,
      messageCount: bodies.length,
      batch: true,
      sizeBytes: batch.payloads.length,
      correlationId: resolved.correlationId ?? resolved.headers[CORRELATION_ID_HEADER],
    };
    const { ids } = await observePublish(ctx.middlewares, ctx.emit, scope, async (injected) => {
      const transaction = await port(ctx, executor, 'publishBatch', resolved, call);
      const inTransaction = planWake(ctx.notify, transaction.wake, ctx.notifier) === 'in-transaction';
      const values: unknown[] = [validQueue, ...batchColumns(batch, resolved.headers, injected), ...activation(resolved)];
      if (inTransaction) values.push(ctx.channel);
      values.push(resolved.orderingKey ?? null);
      const stmt = inTransaction ? ctx.sql.publishBatch : ctx.sql.afterCommit.publishBatch;
      const row = (await runStatement(ctx, transaction, 'publishBatch', stmt, values))[0] as BatchResult | undefined;
      if (!inTransaction) wakeAfter(transaction.wake, ctx.notifier, validQueue, row);
      const inserted = typeof row?.ids === 'string' ? row.ids.split(',') : [];
      return { ids: inserted, inserted: inserted.length };
    });
    return ids as string[];
  } finally {
    call?.release();
  }
}

/**
 * Deletes the live row of (queue, timerId) through the caller's executor. Returns false when there
 * is none, or when it is leased: its handler is already running and cannot be recalled.
 */
export async function cancelTimer(
  ctx: ProducerContext,
  executor: unknown,
  queue: unknown,
  timerId: unknown,
  options?: unknown,
): Promise<boolean> {
  // A pool or a client outside BEGIN is refused, as for publish: the delete would commit on its own.
  const { autocommit } = resolveCancelTimerOptions(options);
  assertTransactional('cancelTimer', executor, autocommit);
  const validQueue = validateQueue(queue);
  if (typeof timerId !== 'string' || timerId.length === 0) {
    throw new InvalidOptionError({ option: 'timerId', value: timerId, expected: 'a non-empty string' });
  }
  refuseUnstorable('timerId', timerId);
  // Queued at once (nothing is awaited before it): it runs in the transaction it was called in.
  const transaction = await port(ctx, executor, 'cancelTimer', { autocommit }, undefined);
  const rows = await runStatement(ctx, transaction, 'cancelTimer', ctx.sql.cancelTimer, [validQueue, timerId]);
  const row = rows[0] as DueAnswer | undefined;
  // A cancelled keyed timer gives the rows behind it their own time back, often now: their
  // consumers are told, as for a publish (one more statement in the transaction when the
  // wake-up must travel inside it; rare: only keyed timers with rows behind them).
  const payload = payloadFor(validQueue, row);
  if (payload === undefined) return row !== undefined;
  if (planWake(ctx.notify, transaction.wake, ctx.notifier) === 'after-statement') {
    wakeAfterStatement(transaction.wake, ctx.notifier, payload);
    return true;
  }
  try {
    await runStatement(ctx, transaction, 'cancelTimer', ctx.sql.notifyInTransaction, [ctx.channel, payload]);
  } catch (error) {
    // With autocommit the cancel has committed already: a lost wake-up costs a poll, and the
    // caller must not read "not cancelled". Inside the caller's transaction it fails with it.
    if (!autocommit) throw error;
    ctx.logger.warn(
      { queue: validQueue, timerId, err: errorMessage(error) },
      'cancelTimer (autocommit) committed, but its wake-up failed: the rows behind the timer run at the next poll',
    );
  }
  return true;
}
