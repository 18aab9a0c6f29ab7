import type { DeadLetters } from './dlq/dead-letters.js';
import { OutboxStoppedError } from './errors.js';
import { type OutboxOptions, type ResolvedOutboxOptions, resolveOutboxOptions } from './outbox-options.js';
import type { TransactionTarget } from './producer/executor.js';
import { fetchUnprocessed, type FetchUnprocessedOptions, isFetchTarget } from './producer/fetch-unprocessed.js';
import type { OutboxRow } from './producer/outbox-row.js';
import { cancelTimer, type ProducerContext, publish, publishBatch } from './producer/publish.js';
import type { CancelTimerOptions, PublishBatchOptions, PublishOptions } from './producer/publish-options.js';
import { buildProducerSql } from './producer/sql.js';
import { WakeNotifier } from './producer/wake-notifier.js';
import type { PeekOptions, PeekPage, PeekPreviewPage } from './queues/peek.js';
import { QueueOperations } from './queues/queue-operations.js';
import type { PauseOptions, QueuePauseState, QueueStatusReport, StatusOptions } from './queues/queue-status.js';
import { buildThroughputSql } from './queues/throughput-sql.js';
import { ThroughputTally } from './queues/throughput-tally.js';
import { relayHandler } from './relay/relay-handler.js';
import { type RelayOptions, relaySubscribeOptions, validateSink } from './relay/relay-options.js';
import { RelaySinks } from './relay/relay-sinks.js';
import type { RelaySink } from './relay/sink.js';
import { sourceIdReader } from './relay/source-id.js';
import { autovacuumDdl } from './schema/autovacuum.js';
import { ConsumerDiagnostics } from './schema/consumer-diagnostics.js';
import { migrate, type MigrateResult, migrationScript } from './schema/migrate.js';
import { type MigrateOptions, resolveMigrateOptions } from './schema/migration-lock.js';
import { validateSchema, type ValidateSchemaOptions } from './schema/validate-schema.js';
import { ConsumerSignals } from './subscriber/consumer-signals.js';
import type { Handler } from './subscriber/message.js';
import { RowLockSubscription } from './subscriber/row-lock-subscription.js';
import { buildSubscriberSql, type SubscriberSql } from './subscriber/sql.js';
import { Subscription, type SubscriptionDeps } from './subscriber/subscription.js';
import {
  heldConnections,
  resolveSubscribeOptions,
  rowLockPoolWarning,
  type SubscribeOptions,
  transactionalPoolWarning,
} from './subscriber/subscription-options.js';
import type { AnyQueues, BodyOf, PublishBody, QueueMap, QueueName } from './typed-events/queue-map.js';
import { validatingHandler } from './typed-events/validating-handler.js';
import { beforeDeadline, CLOSE_TIMEOUT_MS } from './util/deadline.js';
import { statement } from './util/statement.js';
import { StatementRunner } from './util/statement-runner.js';

/** What subscribe() returns: the subscription's resolved identity. */
export interface SubscriptionInfo {
  readonly name: string;
  readonly queues: readonly string[];
}

/** See Outbox.internals. @internal */
export interface OutboxInternals {
  readonly pool: ResolvedOutboxOptions['pool'];
  readonly names: ResolvedOutboxOptions['names'];
  readonly logger: ResolvedOutboxOptions['logger'];
  readonly stopped: boolean;
  /** The queues of every subscription (reported at 0 while empty). */
  readonly subscribedQueues: readonly string[];
  /**
   * How a dedicated session is opened (the queue-state leader's advisory lock): LISTEN's settings,
   * so behind a transaction pooler it goes to listenConnectionString, straight to PostgreSQL, where
   * a session lock holds.
   */
  readonly sessionClientConfig: ResolvedOutboxOptions['listenClientConfig'];
}

/** How long ping() waits for the database. */
export const PING_TIMEOUT_MS = 5_000;
const PING = statement('ping', 'SELECT 1');

/**
 * A claim in flight, or claims failing, for this many queryTimeoutMs make ping() false (a claim's
 * checkout and its statement are each bounded by about one).
 */
export const STALL_QUERY_TIMEOUTS = 3;

/**
 * One outbox table: publish into it inside your own transactions, migrate and inspect it.
 *
 * ```ts
 * const outbox = new Outbox({ connectionString: process.env.DATABASE_URL });
 * await outbox.migrate();
 * await client.query('BEGIN');
 * await client.query('INSERT INTO orders …');
 * await outbox.publish(client, 'order.created', { orderId });
 * await client.query('COMMIT');
 * ```
 *
 * Typed: `new Outbox<AppEvents>({ … })` with a queue map (`interface AppEvents { 'order.created':
 * { orderId: string } }`), or `new Outbox({ …, schemas: { 'order.created': zodSchema } })`, which
 * also validates bodies at run time. Then publish, publishBatch, cancelTimer, subscribe and relay
 * check queue names and bodies at compile time, and handlers get typed bodies
 * (architecture/typed-events.md). Q is the body handlers get, I the body publish accepts (they
 * differ only when a schema transforms the body). Without either, every queue and body is accepted.
 */
export class Outbox<Q extends QueueMap = AnyQueues, I extends QueueMap = Q> {
  readonly #options: ResolvedOutboxOptions;
  readonly #producer: ProducerContext;
  readonly #notifier: WakeNotifier;
  readonly #subscriberSql: SubscriberSql;
  readonly #statements: StatementRunner;
  readonly #subscriptions: (Subscription | RowLockSubscription)[] = [];
  readonly #sinks: RelaySinks;
  readonly #diagnostics: ConsumerDiagnostics;
  readonly #tally: ThroughputTally;
  readonly #signals: ConsumerSignals;
  readonly #operations: QueueOperations;
  /** The relays' source id (relay/source-id.ts), read once for all of this Outbox's relays. */
  readonly #relaySourceId: () => Promise<string>;
  #started = false;
  /**
   * running → draining (stop() began: no new subscriptions, claims end, handlers finish; producer
   * calls still work, so a handler can publish its follow-up) → closed (the drain ended: producer
   * calls throw OutboxStoppedError too; the connections close).
   */
  #state: 'running' | 'draining' | 'closed' = 'running';
  #stopping: Promise<void> | undefined;

  constructor(options: OutboxOptions<Q, I>) {
    this.#options = resolveOutboxOptions(options);
    // Opens its connection on the first after-commit wake-up, so an Outbox that never publishes has none.
    this.#notifier = new WakeNotifier({
      clientConfig: this.#options.clientConfig,
      channel: this.#options.names.channel,
      logger: this.#options.logger,
      preparedStatements: this.#options.preparedStatements,
      signalLocal: (payload) => {
        this.#signals.signal(payload);
      },
    });
    this.#producer = {
      sql: buildProducerSql(this.#options.names),
      channel: this.#options.names.channel,
      preparedStatements: this.#options.preparedStatements,
      middlewares: this.#options.middlewares,
      emit: this.#options.emit,
      notify: this.#options.notify,
      notifier: this.#notifier,
      schemas: this.#options.schemas,
      table: this.#options.names.outbox,
      logger: this.#options.logger,
    };
    this.#subscriberSql = buildSubscriberSql(this.#options.names);
    this.#sinks = new RelaySinks(this.#options.logger);
    this.#diagnostics = new ConsumerDiagnostics(this.#options);
    this.#signals = new ConsumerSignals({
      options: this.#options,
      subscriptions: this.#subscriptions,
      diagnostics: this.#diagnostics,
      ownNotifierPid: () => this.#notifier.backendPid,
      running: () => this.#state === 'running',
    });
    const { pool, preparedStatements, queryTimeoutMs } = this.#options;
    this.#statements = new StatementRunner(pool, preparedStatements, queryTimeoutMs);
    this.#tally = new ThroughputTally(this.#statements, buildThroughputSql(this.#options.names), this.#options.logger);
    this.#relaySourceId = sourceIdReader(this.#statements, this.#options.names.outbox, this.#options.logger);
    this.#operations = new QueueOperations({
      db: this.#statements,
      names: this.#options.names,
      statementTimeoutMs: queryTimeoutMs,
      signalLocal: (payload) => {
        this.#signals.signal(payload);
      },
      pausedLocal: (queue) => {
        this.#signals.paused(queue);
      },
    });
  }

  /** The outbox table as configured (`txoutbox.outbox` by default, `public.outbox`, `app.outbox`). */
  get table(): string {
    return this.#options.names.outbox.display;
  }

  /** The DLQ table, or undefined when the DLQ is off. */
  get dlqTable(): string | undefined {
    return this.#options.names.dlq?.display;
  }

  /**
   * The dead-letter queue: list, get, redrive and purge its rows (architecture/operations.md).
   * Throws InvalidOptionError naming `dlqTable` when the Outbox has no DLQ (`dlqTable: false`).
   */
  get dlq(): DeadLetters {
    this.#assertOpen('dlq');
    return this.#operations.deadLetters;
  }

  /**
   * The NOTIFY channel publishes signal on. Payload: the queue name when rows are due; a pause's
   * signal, or a delayed row's announcement of when it is due, behind a control-character prefix
   * (src/queues/channel-signal.ts).
   */
  get channel(): string {
    return this.#options.names.channel;
  }

  /**
   * What txoutbox's own read-only collectors need (the queue-state metrics of
   * `txoutbox/prometheus`): the pool, the resolved table names and the logger. Not for
   * applications: its shape may change in any release.
   * @internal
   */
  get internals(): OutboxInternals {
    return {
      pool: this.#options.pool,
      names: this.#options.names,
      logger: this.#options.logger,
      stopped: this.#state !== 'running',
      subscribedQueues: this.#subscriptions.flatMap((s) => s.options.queues),
      sessionClientConfig: this.#options.listenClientConfig,
    };
  }

  /**
   * Applies pending schema migrations in one transaction under an advisory lock: idempotent, and
   * safe to call from every process at start-up. Uses one dedicated connection from the pool.
   * An upgrade of a live table waits at most `lockTimeoutMs` for its lock per attempt, so it never
   * stalls publishes and claims for long (MigrateOptions; MigrationLockTimeoutError at the end).
   */
  async migrate(options?: MigrateOptions): Promise<MigrateResult> {
    this.#assertRunning('migrate');
    const resolved = resolveMigrateOptions(options);
    const client = await this.#options.pool.connect();
    try {
      const result = await migrate(client, this.#options.names, resolved);
      if (result.applied.length > 0) {
        this.#options.logger.info({ table: this.table, applied: result.applied }, 'applied outbox migrations');
      }
      return result;
    } finally {
      client.release();
    }
  }

  /** The SQL `migrate()` would run on an empty database, for teams that own their migrations. */
  migrationScript(): string {
    return migrationScript(this.#options.names);
  }

  /**
   * Compares the live outbox (and DLQ) table with what the migrations create and throws one
   * `SchemaDriftError` listing every difference, each with a DBA-phrased message and its fix;
   * returns when there is none. Read-only (catalog queries). Call it at start-up or from a health
   * check when your own migration tool owns the schema. See architecture/schema.md.
   */
  async validateSchema(options?: ValidateSchemaOptions): Promise<void> {
    this.#assertRunning('validateSchema');
    await validateSchema(this.#options.pool, this.#options.names, options);
  }

  /**
   * The `ALTER TABLE … SET (autovacuum_…)` statement that tunes the outbox table for queue churn.
   * txoutbox never runs it: put it in your migrations. `validateSchema({ checkAutovacuum: true })`
   * reports its absence.
   */
  autovacuumDdl(): string {
    return autovacuumDdl(this.#options.names.outbox);
  }

  /**
   * Inserts a message through `executor`, your open transaction: a node-postgres client after
   * BEGIN, or another data layer's transaction wrapped by its adapter (`fromKysely(trx)`, …). It
   * commits or rolls back with your data. Returns the row id, or null when `timerId` is taken.
   */
  async publish<K extends QueueName<Q>>(
    executor: TransactionTarget,
    queue: K,
    body: PublishBody<I, K>,
    options?: PublishOptions,
  ): Promise<string | null> {
    return await this.#publishAny(executor, queue, body, options);
  }

  /** publish() without the queue map's types: for calls whose queue is only known at run time (ctx.publish). */
  async #publishAny(executor: TransactionTarget, queue: string, body: unknown, options?: PublishOptions): Promise<string | null> {
    this.#assertOpen('publish');
    return await publish(this.#producer, executor, queue, body, options);
  }

  /** Inserts many messages to one queue in one statement, through your transaction's client. */
  async publishBatch<K extends QueueName<Q>>(
    executor: TransactionTarget,
    queue: K,
    bodies: readonly PublishBody<I, K>[],
    options?: PublishBatchOptions,
  ): Promise<string[]> {
    this.#assertOpen('publishBatch');
    return await publishBatch(this.#producer, executor, queue, bodies, options);
  }

  /**
   * Deletes the pending row of (queue, timerId). Returns false when there is none or when it is
   * leased (its handler is already running). Durable when your transaction commits; a pool or a
   * client outside BEGIN is refused (NotInTransactionError) unless `{ autocommit: true }`.
   */
  async cancelTimer(
    executor: TransactionTarget,
    queue: QueueName<Q>,
    timerId: string,
    options?: CancelTimerOptions,
  ): Promise<boolean> {
    this.#assertOpen('cancelTimer');
    return await cancelTimer(this.#producer, executor, queue, timerId, options);
  }

  /**
   * Reads rows without leasing them: pending, leased and future-dated alike, in id order. Through
   * the Outbox's pool, or through `transaction` (then it sees that transaction's uncommitted rows).
   */
  fetchUnprocessed(options?: FetchUnprocessedOptions): Promise<OutboxRow[]>;
  fetchUnprocessed(transaction: TransactionTarget, options?: FetchUnprocessedOptions): Promise<OutboxRow[]>;
  async fetchUnprocessed(
    first: TransactionTarget | FetchUnprocessedOptions = {},
    second: FetchUnprocessedOptions = {},
  ): Promise<OutboxRow[]> {
    this.#assertOpen('fetchUnprocessed');
    const [target, options] = isFetchTarget(first) ? [first, second] : [this.#options.pool, first];
    return await fetchUnprocessed(this.#producer.sql, target, this.#producer.preparedStatements, options);
  }

  /**
   * Lists pending rows of `queue` without leasing them, oldest first: ready, scheduled or leased
   * (`state`), each with its state and a 1 KiB body preview; keyset pages of `limit` rows via
   * `nextCursor`. Read-only on the Outbox's own pool: no lock, deliveries_count unchanged.
   * Bad options throw InvalidOptionError. See architecture/operations.md.
   */
  async peek(queue: string, options?: PeekOptions): Promise<PeekPage> {
    this.#assertOpen('peek');
    return await this.#operations.peek(queue, options);
  }

  /**
   * peek() without the bodies: the same rows, order and cursors, each with a 1 KiB preview of its
   * payload and its size, read without fetching the payload whole. For a page that only shows
   * rows (the dashboard, `txoutbox queue peek`): fifty 5 MB bodies cost kilobytes, not 250 MB.
   */
  async peekPreviews(queue: string, options?: PeekOptions): Promise<PeekPreviewPage> {
    this.#assertOpen('peekPreviews');
    return await this.#operations.peekPreviews(queue, options);
  }

  /**
   * Pauses `queue` in every process: from the next claim on (within a second), no subscriber
   * claims its rows until resume(); publishing is unaffected and rows keep arriving. Persisted in
   * the database; idempotent. See architecture/operations.md.
   */
  async pause(queue: string, options?: PauseOptions): Promise<QueuePauseState> {
    this.#assertOpen('pause');
    return await this.#operations.controls.pause(queue, options);
  }

  /** Ends a pause: every subscriber of `queue` is woken and claims again. Idempotent. */
  async resume(queue: string): Promise<QueuePauseState> {
    this.#assertOpen('resume');
    return await this.#operations.controls.resume(queue);
  }

  /**
   * Every queue's depth by state, DLQ count, oldest ready age, pause state and per-minute
   * throughput (summed over every process), in one consistent read-only snapshot.
   */
  async status(options?: StatusOptions): Promise<QueueStatusReport> {
    this.#assertOpen('status');
    return await this.#operations.controls.status(options);
  }

  /**
   * Consumes `queues` with `handler`: returning acks (the row is deleted), throwing retries by the
   * strategy, ctx.reject() ends the row. Runs once start() was called (at once if it was).
   * With a queue map, `message.body` has the type of the queue's entry (a union for several
   * queues); with a schema for the queue, it is the schema's output, and a body the schema refuses
   * ends as `rejected` (into the DLQ) without running the handler.
   */
  subscribe<K extends QueueName<Q>>(
    queues: K | readonly K[],
    handler: Handler<BodyOf<Q, K>>,
    options?: SubscribeOptions,
  ): SubscriptionInfo;
  /**
   * 0.1's form, for an Outbox without a queue map: `subscribe<Order>(…)` asserts the body type
   * (unchecked). An Outbox with a queue map refuses it: its bodies are typed by the map.
   */
  subscribe<T>(
    queues: string extends QueueName<Q> ? string | readonly string[] : never,
    handler: Handler<T>,
    options?: SubscribeOptions,
  ): SubscriptionInfo;
  subscribe(queues: string | readonly string[], handler: Handler<never>, options?: SubscribeOptions): SubscriptionInfo {
    return this.#subscribeAny(queues, handler as Handler, options);
  }

  #subscribeAny(queues: string | readonly string[], handler: Handler, options?: SubscribeOptions): SubscriptionInfo {
    this.#assertRunning('subscribe');
    const resolved = resolveSubscribeOptions(queues, handler, options, this.#options.names.dlq !== undefined);
    const { logger } = this.#options;
    for (const warning of resolved.warnings) logger.warn({ subscriber: resolved.name }, warning);
    const poolWarning = transactionalPoolWarning(
      resolved,
      this.#options.pool.options.max,
      this.#subscriptions.filter((s) => s.options.transactional).map((s) => s.options.concurrency),
    );
    if (poolWarning !== undefined) logger.warn({ subscriber: resolved.name }, poolWarning);
    const rowLockWarning = rowLockPoolWarning(
      resolved,
      this.#options.pool.options.max,
      this.#subscriptions.map((s) => heldConnections(s.options)),
    );
    if (rowLockWarning !== undefined) logger.warn({ subscriber: resolved.name }, rowLockWarning);
    const taken = resolved.queues.filter((queue) => this.#subscriptions.some((s) => s.options.queues.includes(queue)));
    if (taken.length > 0) {
      logger.warn(
        { subscriber: resolved.name, queues: taken },
        'another subscription of this Outbox already serves these queues: they will compete for the same rows',
      );
    }
    const validated = validatingHandler(handler, this.#options.schemas, resolved.queues);
    const subscriptionDeps: SubscriptionDeps = {
      db: this.#statements,
      sql: this.#subscriberSql,
      dlqTable: this.#options.names.dlq,
      logger,
      emit: this.#options.emit,
      renderError: this.#options.renderError,
      middlewares: this.#options.middlewares,
      customStats: this.#options.customStats,
      stallAfterMs: STALL_QUERY_TIMEOUTS * this.#options.queryTimeoutMs,
      onClaimError: this.#diagnostics.onClaimError,
      onIdle: () => {
        this.#signals.idle();
      },
      tally: {
        count: (queue, outcome) => {
          this.#tally.count(queue, outcome);
          // Its due time is known here only: handed over to the other consumers at stop().
          if (outcome === 'retried') this.#signals.retried(queue);
        },
      },
      // ctx.publish: through the delivery's transaction, or on its own through the pool.
      followUp: (client, queue, body, publishOptions) =>
        this.#publishAny(
          client ?? this.#options.pool,
          queue,
          body,
          client ? publishOptions : { ...publishOptions, autocommit: true },
        ),
    };
    const subscription =
      resolved.lease === 'row-lock'
        ? new RowLockSubscription(resolved, validated, subscriptionDeps, this.#options.names)
        : new Subscription(resolved, validated, subscriptionDeps);
    this.#subscriptions.push(subscription);
    if (this.#started) {
      subscription.start();
      this.#signals.started(resolved.queues);
    }
    return { name: resolved.name, queues: resolved.queues };
  }

  /**
   * Relays `queues` to a broker through `sink` (txoutbox/relay: rabbitmqSink, natsSink,
   * redisStreamSink, webhookSink, or your own RelaySink): a subscription whose handler sends each
   * row and whose row is deleted only once the broker confirmed it. A refusal (SinkRefusedError)
   * ends the row into the DLQ with the broker's reason; any other failure retries, by default
   * without giving up (RELAY_DEFAULTS). Rows of one orderingKey are sent one at a time, in order.
   * ping() reports a sink whose check() says its broker is down; stop() closes the sink.
   */
  relay(queues: QueueName<Q> | readonly QueueName<Q>[], sink: RelaySink, options?: RelayOptions): SubscriptionInfo {
    this.#assertRunning('relay');
    const valid = validateSink(sink);
    const subscribeOptions = relaySubscribeOptions(valid, options);
    const handler = relayHandler({
      sink: valid,
      table: this.#options.names.outbox.display,
      sourceId: this.#relaySourceId,
      subscriber: subscribeOptions.name,
      emit: this.#options.emit,
    });
    const info = this.#subscribeAny(queues, handler, subscribeOptions);
    this.#sinks.add(valid);
    return info;
  }

  /** Starts every subscription; the shared LISTEN connection opens once one first waits for work (consumer-signals.ts). Idempotent. */
  start(): void {
    this.#assertRunning('start');
    if (this.#started) return;
    this.#started = true;
    for (const subscription of this.#subscriptions) subscription.start();
    this.#signals.started();
  }

  /**
   * True when the database answers within 5 s and every subscription's loop is alive: not crashed,
   * no claim in flight for 3 × queryTimeoutMs, and not every claim failing for that long; and every
   * relay sink's check() says its broker is up.
   */
  async ping(): Promise<boolean> {
    if (this.#state !== 'running') return false;
    if (this.#subscriptions.some((s) => this.#started && !s.alive)) return false;
    // The brokers and the database at once: ping() stays within PING_TIMEOUT_MS.
    const [sinksUp, databaseUp] = await Promise.all([this.#sinks.allUp(PING_TIMEOUT_MS), this.#pingDatabase()]);
    return sinksUp && databaseUp;
  }

  async #pingDatabase(): Promise<boolean> {
    try {
      // Through the StatementRunner: a ping that times out discards its connection (a half-open
      // one would otherwise be kept, and each probe would strand another).
      return await beforeDeadline(
        this.#statements.run(PING, []).then(() => true),
        PING_TIMEOUT_MS,
        () => false,
      );
    } catch {
      return false;
    }
  }

  /**
   * Stops claiming, waits up to `gracefulTimeoutMs` for running handlers (all subscriptions in
   * parallel), then closes the LISTEN and NOTIFY connections and the pool txoutbox created (never
   * one you passed in) within CLOSE_TIMEOUT_MS: resolves within `gracefulTimeoutMs` + 1 s (+ 1.5 s
   * with a row-lock subscription, whose batches get half a second more to commit what finished).
   * Idempotent; the Outbox cannot be restarted. `publish`, `publishBatch`, `cancelTimer` and
   * `fetchUnprocessed` keep working until the drain has ended, so a running handler can publish
   * its follow-up; afterwards they throw `OutboxStoppedError`.
   */
  stop(): Promise<void> {
    if (this.#state === 'running') this.#state = 'draining';
    this.#stopping ??= (async () => {
      await Promise.all(this.#subscriptions.map((s) => s.stop(this.#options.gracefulTimeoutMs)));
      this.#state = 'closed';
      // Each bounded by CLOSE_TIMEOUT_MS, in parallel: stop() ends within gracefulTimeoutMs plus
      // that, even when the server is frozen or a connection half-open (issue 13, item 6). The
      // pool's share is split: half for the last throughput counts, half for the close.
      const half = CLOSE_TIMEOUT_MS / 2;
      await Promise.all([
        this.#signals.stop(),
        this.#notifier.stop(),
        this.#tally.stopWithin(half).then(() => this.#options.ownedPool?.close(half)),
        this.#sinks.closeWithin(CLOSE_TIMEOUT_MS),
      ]);
    })();
    return this.#stopping;
  }

  /** Subscriptions, start and schema calls: refused once stop() began. */
  #assertRunning(operation: string): void {
    if (this.#state !== 'running') throw new OutboxStoppedError(operation);
  }

  /** Producer calls: they work until the drain has ended (a draining handler publishes its follow-up). */
  #assertOpen(operation: string): void {
    if (this.#state === 'closed') throw new OutboxStoppedError(operation);
  }
}
