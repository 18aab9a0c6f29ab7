import type { DeadLetter } from '../dlq/dead-letter-row.js';
import { CORRELATION_ID_HEADER } from '../envelope/headers.js';
import { InvalidOptionError, NotInTransactionError, OutboxStoppedError } from '../errors.js';
import type { OutboxEvent } from '../instrumentation/events.js';
import type { SubscriptionInfo } from '../outbox.js';
import type { TransactionTarget } from '../producer/executor.js';
import { fetchLimit, type FetchUnprocessedOptions, isFetchTarget } from '../producer/fetch-unprocessed.js';
import { notInTransaction } from '../producer/in-transaction-query.js';
import type { OutboxRow } from '../producer/outbox-row.js';
import type { CancelTimerOptions, PublishBatchOptions, PublishOptions } from '../producer/publish-options.js';
import { validateQueue } from '../producer/publish-options.js';
import type { Handler } from '../subscriber/message.js';
import { resolveSubscribeOptions, type SubscribeOptions } from '../subscriber/subscription-options.js';
import type { AnyQueues, BodyOf, PublishBody, QueueMap, QueueName } from '../typed-events/queue-map.js';
import { validatingHandler } from '../typed-events/validating-handler.js';
import { TestClock } from './clock.js';
import { type DrainOptions, type DrainResult, drainSubscriptions, type MemorySubscription } from './memory-drain.js';
import { type AckedRecord, MemoryOutcomes, type OutcomeRecords, type RetriedRecord } from './memory-outcomes.js';
import {
  type InTransaction,
  memoryCancelTimer,
  type MemoryProducerContext,
  memoryPublish,
  memoryPublishBatch,
} from './memory-producer.js';
import { inspectRowBody, type MemoryRow, toOutboxRow } from './memory-row.js';
import { MemoryTable } from './memory-table.js';
import { type ResolvedTestOutboxOptions, resolveTestOutboxOptions, type TestOutboxOptions } from './test-outbox-options.js';
import { TestTransaction } from './test-transaction.js';

/** A committed message, as published. */
export interface PublishedRecord {
  readonly id: string;
  readonly queue: string;
  /** Decoded by content type, as the handler will see it. */
  readonly body: unknown;
  readonly headers: Readonly<Record<string, string>>;
  readonly correlationId: string;
  readonly orderingKey: string | null;
  readonly timerId: string | null;
  /** When it is first due, by the test clock. */
  readonly nextAttemptAt: Date;
  readonly publishedAt: Date;
}

/**
 * An outbox in memory with the public surface a handler-level test needs: publish, publishBatch,
 * cancelTimer, fetchUnprocessed, subscribe, start, stop, recorders and middlewares, with
 * transactions of its own and a clock that moves only when told. Deliveries run through the real
 * delivery path (src/subscriber/deliver.ts: the ack policy, the middleware chain, the retry
 * strategy, maxDeliveries), on a table that applies the claim's rules (per-key turns, due times,
 * timers). What is and is not simulated: architecture/testing.md. A contract suite
 * (test/contract/) runs the same scenarios against it and against PostgreSQL.
 */
export class TestOutbox<Q extends QueueMap = AnyQueues, I extends QueueMap = Q> {
  /** The clock every time of this outbox is read from: advance() it to make delays and retries due. */
  readonly clock: TestClock;
  readonly #options: ResolvedTestOutboxOptions;
  readonly #table = new MemoryTable();
  readonly #open = new Set<TestTransaction>();
  readonly #made = new WeakSet<TestTransaction>();
  readonly #subscriptions: MemorySubscription[] = [];
  readonly #records: OutcomeRecords = { acked: [], retried: [], deadLetters: [] };
  readonly #published: PublishedRecord[] = [];
  readonly #events: OutboxEvent[] = [];
  readonly #producer: MemoryProducerContext;
  #deadLetterSeq = 0;
  #started = false;
  #stopped = false;

  constructor(options?: TestOutboxOptions<Q, I>) {
    this.#options = resolveTestOutboxOptions(options, (event) => this.#events.push(event));
    this.clock = new TestClock(this.#options.now);
    this.#producer = {
      table: this.#table,
      schemas: this.#options.schemas,
      clock: this.clock,
      middlewares: this.#options.middlewares,
      emit: this.#options.emit,
      openTransactions: () => this.#open,
      transactionOf: (operation, target, autocommit) => this.#transactionOf(operation, target, autocommit),
    };
  }

  /** Messages whose transaction committed, in commit order. */
  get published(): readonly PublishedRecord[] {
    return this.#published;
  }

  /** Deliveries whose ack deleted their row, in order. */
  get acked(): readonly AckedRecord[] {
    return this.#records.acked;
  }

  /** Failed runs that were rescheduled, with the strategy's attempt and delay. */
  get retried(): readonly RetriedRecord[] {
    return this.#records.retried;
  }

  /** Rows ended into the DLQ, as outbox.dlq.get() returns them (none with `dlqTable: false`). */
  get deadLetters(): readonly DeadLetter[] {
    return this.#records.deadLetters;
  }

  /** Every recorder event, in order (the recorders you passed receive them too). */
  get events(): readonly OutboxEvent[] {
    return this.#events;
  }

  /**
   * Opens a transaction: `const tx = outbox.transaction(); await outbox.publish(tx, …); await
   * tx.commit()`. Or `await outbox.transaction(async (tx) => { … })`: committed when `fn` returns,
   * rolled back when it throws (the error is rethrown).
   */
  transaction(): TestTransaction;
  transaction<T>(fn: (tx: TestTransaction) => Promise<T> | T): Promise<T>;
  transaction<T>(fn?: (tx: TestTransaction) => Promise<T> | T): TestTransaction | Promise<T> {
    if (fn !== undefined && typeof fn !== 'function') {
      throw new InvalidOptionError({ option: 'transaction(fn)', value: fn, expected: 'a function (tx) => Promise<T>' });
    }
    const tx = new TestTransaction(this.#table, {
      committed: (rows) => {
        this.#committed(rows);
      },
      ended: (ended) => this.#open.delete(ended),
    });
    this.#made.add(tx);
    this.#open.add(tx);
    if (fn === undefined) return tx;
    return (async () => {
      let result: T;
      try {
        result = await fn(tx);
      } catch (error) {
        if (tx.state === 'open') await tx.rollback();
        throw error;
      }
      if (tx.state === 'open') await tx.commit();
      return result;
    })();
  }

  /**
   * Inserts a message in `executor`, a transaction of this outbox. Returns its id, or null when
   * `timerId` is taken. Typed and validated by the queue map and `schemas` as Outbox.publish is.
   */
  async publish<K extends QueueName<Q>>(
    executor: TransactionTarget,
    queue: K,
    body: PublishBody<I, K>,
    options?: PublishOptions,
  ): Promise<string | null> {
    return await this.#publishAny(executor, queue, body, options);
  }

  async #publishAny(executor: TransactionTarget, queue: string, body: unknown, options?: PublishOptions): Promise<string | null> {
    this.#assertRunning('publish');
    return await memoryPublish(this.#producer, executor, queue, body, options);
  }

  /** Inserts many messages to one queue, all or none, in `executor`. */
  async publishBatch<K extends QueueName<Q>>(
    executor: TransactionTarget,
    queue: K,
    bodies: readonly PublishBody<I, K>[],
    options?: PublishBatchOptions,
  ): Promise<string[]> {
    this.#assertRunning('publishBatch');
    return await memoryPublishBatch(this.#producer, executor, queue, bodies, options);
  }

  /** Deletes the pending row of (queue, timerId) when `executor` commits; false when there is none or it is running. */
  async cancelTimer(
    executor: TransactionTarget,
    queue: QueueName<Q>,
    timerId: string,
    options?: CancelTimerOptions,
  ): Promise<boolean> {
    this.#assertRunning('cancelTimer');
    return await memoryCancelTimer(this.#producer, executor, queue, timerId, options);
  }

  /** Reads rows without leasing them, in id order: committed ones, or what `transaction` sees. */
  fetchUnprocessed(options?: FetchUnprocessedOptions): Promise<OutboxRow[]>;
  fetchUnprocessed(transaction: TransactionTarget, options?: FetchUnprocessedOptions): Promise<OutboxRow[]>;
  fetchUnprocessed(
    first: TransactionTarget | FetchUnprocessedOptions = {},
    second: FetchUnprocessedOptions = {},
  ): Promise<OutboxRow[]> {
    // A promise executor's throw is a rejection: bad options reject, as the real (async) one does.
    return new Promise((resolve) => {
      resolve(this.#fetchUnprocessed(first, second));
    });
  }

  #fetchUnprocessed(first: TransactionTarget | FetchUnprocessedOptions, second: FetchUnprocessedOptions): OutboxRow[] {
    this.#assertRunning('fetchUnprocessed');
    // The real one's split of its arguments and checks of its options: `{ limt: 5 }` is refused, not read as 100 rows.
    const [target, options] = isFetchTarget(first) ? [first, second] : [undefined, first];
    const limit = fetchLimit(options);
    const queue = options.queue === undefined ? undefined : validateQueue(options.queue);
    const rows =
      target instanceof TestTransaction && this.#made.has(target) && target.state === 'open'
        ? target.visibleRows()
        : this.#table.rows();
    return rows
      .filter((row) => queue === undefined || row.queue === queue)
      .slice(0, limit)
      .map(toOutboxRow);
  }

  /**
   * Consumes `queues` with `handler` (validated as the real subscribe() does, bodies checked by
   * `schemas` first); drain() runs it. Typed by the queue map as Outbox.subscribe is.
   */
  subscribe<K extends QueueName<Q>>(
    queues: K | readonly K[],
    handler: Handler<BodyOf<Q, K>>,
    options?: SubscribeOptions,
  ): SubscriptionInfo;
  /** 0.1's form, for an outbox without a queue map: `subscribe<Order>(…)` asserts the body type. */
  subscribe<T>(
    queues: string extends QueueName<Q> ? string | readonly string[] : never,
    handler: Handler<T>,
    options?: SubscribeOptions,
  ): SubscriptionInfo;
  subscribe(queues: string | readonly string[], handler: Handler<never>, options?: SubscribeOptions): SubscriptionInfo {
    this.#assertRunning('subscribe');
    const resolved = resolveSubscribeOptions(queues, handler, options, this.#options.dlq);
    const { logger } = this.#options;
    for (const warning of resolved.warnings) logger.warn({ subscriber: resolved.name }, warning);
    const writer = new MemoryOutcomes({
      table: this.#table,
      clock: this.clock,
      subscriber: resolved.name,
      dlq: resolved.dlq,
      emit: this.#options.emit,
      renderError: this.#options.renderError,
      logger,
      records: this.#records,
      nextDeadLetterId: () => String((this.#deadLetterSeq += 1)),
    });
    this.#subscriptions.push({
      queues: new Set(resolved.queues),
      deps: {
        options: resolved,
        handler: validatingHandler(handler as Handler, this.#options.schemas, resolved.queues),
        writer,
        logger,
        emit: this.#options.emit,
        middlewares: this.#options.middlewares,
        customStats: this.#options.customStats,
        now: () => this.clock.nowMs(),
        // ctx.publish outside a transactional subscription: committed on its own at once.
        followUp: (_client, queue, body, publishOptions) =>
          this.transaction((tx) => this.#publishAny(tx, queue, body, publishOptions)),
      },
    });
    return { name: resolved.name, queues: resolved.queues };
  }

  /** Kept for parity with Outbox.start(): drain() is what runs the subscriptions here. Idempotent. */
  start(): void {
    this.#assertRunning('start');
    this.#started = true;
  }

  /** True once start() was called (code under test that forgets it is caught by asserting this). */
  get started(): boolean {
    return this.#started;
  }

  /** Ends the outbox: producer calls, subscribe() and drain() throw OutboxStoppedError from now on. Idempotent. */
  stop(): Promise<void> {
    this.#stopped = true;
    return Promise.resolve();
  }

  /**
   * Runs the subscriptions' handlers, one delivery at a time, until no row of a subscribed queue is
   * due by the clock (with `advanceClock`, until none is left). See drainSubscriptions().
   */
  async drain(options: DrainOptions = {}): Promise<DrainResult> {
    this.#assertRunning('drain');
    return await drainSubscriptions(
      {
        table: this.#table,
        clock: this.clock,
        emit: this.#options.emit,
        subscriptions: this.#subscriptions,
        maxDrainSteps: this.#options.maxDrainSteps,
        openTransaction: () => this.transaction(),
        publishIn: (tx, queue, body, publishOptions) => this.#publishAny(tx, queue, body, publishOptions),
      },
      options,
    );
  }

  /** Rows still in the table (committed, not yet acked or ended), in id order, as fetchUnprocessed() shows them. */
  pending(): OutboxRow[] {
    return this.#table.rows().map(toOutboxRow);
  }

  #committed(rows: readonly MemoryRow[]): void {
    const publishedAt = this.clock.now();
    for (const row of rows) {
      this.#published.push({
        id: String(row.seq),
        queue: row.queue,
        body: inspectRowBody(row),
        headers: { ...row.headers },
        correlationId: row.headers[CORRELATION_ID_HEADER] ?? String(row.seq),
        orderingKey: row.orderingKey,
        timerId: row.timerId,
        nextAttemptAt: new Date(row.nextAttemptAt),
        publishedAt,
      });
    }
  }

  /**
   * The real producer's check of its first argument (NotInTransactionError), for this outbox's
   * transactions, made again when the write runs: a publish awaits its body's validation and its
   * middlewares first, and a transaction committed meanwhile (an un-awaited publish) must fail the
   * call as the real one's dispatch-time check does (producer/in-transaction-query.ts), not lose
   * the row while returning its id.
   */
  #transactionOf(operation: string, target: unknown, autocommit: boolean): InTransaction {
    if (!(target instanceof TestTransaction) || !this.#made.has(target)) {
      throw new NotInTransactionError(
        `outbox.${operation}() of a test outbox needs a transaction it made (outbox.transaction()), got ${target === null ? 'null' : target instanceof TestTransaction ? "another test outbox's transaction" : typeof target}.`,
      );
    }
    if (target.state !== 'open' && !autocommit) {
      throw new NotInTransactionError(
        `outbox.${operation}() was given a test transaction that was already ${target.state.replace('_', ' ')}, so the row would commit on its own. ` +
          'Fix: publish before commit(), or pass { autocommit: true } to publish outside any transaction on purpose.',
      );
    }
    return async (write) => {
      if (target.state === 'open') return write(target);
      if (!autocommit) throw notInTransaction(operation);
      // autocommit: outside any transaction on purpose, so the write commits on its own, as through a pool.
      return await this.#inOwnTransaction(write);
    };
  }

  async #inOwnTransaction<T>(write: (transaction: TestTransaction) => T): Promise<T> {
    const own = this.transaction();
    let result;
    try {
      result = write(own);
    } catch (error) {
      await own.rollback();
      throw error;
    }
    await own.commit();
    return result;
  }

  #assertRunning(operation: string): void {
    if (this.#stopped) throw new OutboxStoppedError(operation);
  }
}

/** An in-memory outbox for tests: see TestOutbox. */
export function createTestOutbox<Q extends QueueMap = AnyQueues, I extends QueueMap = Q>(
  options?: TestOutboxOptions<Q, I>,
): TestOutbox<Q, I> {
  return new TestOutbox<Q, I>(options);
}
