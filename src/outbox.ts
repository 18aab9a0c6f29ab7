import { InvalidOptionError, OutboxStoppedError } from './errors.js';
import { type OutboxOptions, type ResolvedOutboxOptions, resolveOutboxOptions } from './outbox-options.js';
import { type OutboxRow, type OutboxRowRecord, toOutboxRow } from './producer/outbox-row.js';
import { cancelTimer, type ProducerContext, publish, publishBatch } from './producer/publish.js';
import type { PublishBatchOptions, PublishOptions } from './producer/publish-options.js';
import { validateQueue } from './producer/publish-options.js';
import { buildProducerSql } from './producer/sql.js';
import { migrate, type MigrateResult, migrationScript } from './schema/migrate.js';

export interface FetchUnprocessedOptions {
  /** Only this queue. @default every queue */
  readonly queue?: string;
  /** At most this many rows, in id order. @default 100 */
  readonly limit?: number;
}

export const MAX_FETCH_UNPROCESSED = 10_000;

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
 */
export class Outbox {
  readonly #options: ResolvedOutboxOptions;
  readonly #producer: ProducerContext;
  #stopped = false;

  constructor(options: OutboxOptions) {
    this.#options = resolveOutboxOptions(options);
    this.#producer = {
      sql: buildProducerSql(this.#options.names),
      channel: this.#options.names.channel,
      preparedStatements: this.#options.preparedStatements,
    };
  }

  /** The outbox table as configured (`outbox`, `app.outbox`). */
  get table(): string {
    return this.#options.names.outbox.display;
  }

  /** The DLQ table, or undefined when the DLQ is off. */
  get dlqTable(): string | undefined {
    return this.#options.names.dlq?.display;
  }

  /** The NOTIFY channel publishes signal on (payload: the queue name). */
  get channel(): string {
    return this.#options.names.channel;
  }

  /**
   * Applies pending schema migrations in one transaction under an advisory lock: idempotent, and
   * safe to call from every process at start-up. Uses one dedicated connection from the pool.
   */
  async migrate(): Promise<MigrateResult> {
    this.#assertRunning('migrate');
    const client = await this.#options.pool.connect();
    try {
      const result = await migrate(client, this.#options.names);
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
   * Inserts a message through `executor`, the node-postgres client of your open transaction: it
   * commits or rolls back with your data. Returns the row id, or null when `timerId` is taken.
   */
  async publish(executor: unknown, queue: string, body: unknown, options?: PublishOptions): Promise<string | null> {
    this.#assertRunning('publish');
    return await publish(this.#producer, executor, queue, body, options);
  }

  /** Inserts many messages to one queue in one statement, through your transaction's client. */
  async publishBatch(
    executor: unknown,
    queue: string,
    bodies: readonly unknown[],
    options?: PublishBatchOptions,
  ): Promise<string[]> {
    this.#assertRunning('publishBatch');
    return await publishBatch(this.#producer, executor, queue, bodies, options);
  }

  /**
   * Deletes the pending row of (queue, timerId). Returns false when there is none or when it is
   * leased (its handler is already running). Durable when your transaction commits.
   */
  async cancelTimer(executor: unknown, queue: string, timerId: string): Promise<boolean> {
    this.#assertRunning('cancelTimer');
    return await cancelTimer(this.#producer, executor, queue, timerId);
  }

  /** Reads rows without leasing them: pending, leased and future-dated alike, in id order. */
  async fetchUnprocessed(options: FetchUnprocessedOptions = {}): Promise<OutboxRow[]> {
    this.#assertRunning('fetchUnprocessed');
    const limit = options.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_FETCH_UNPROCESSED) {
      throw new InvalidOptionError({ option: 'limit', value: limit, expected: `an integer from 1 to ${MAX_FETCH_UNPROCESSED}` });
    }
    const { sql } = this.#producer;
    const result =
      options.queue === undefined
        ? await this.#options.pool.query<OutboxRowRecord>(sql.fetchUnprocessed.text, [limit])
        : await this.#options.pool.query<OutboxRowRecord>(sql.fetchUnprocessedQueue.text, [validateQueue(options.queue), limit]);
    return result.rows.map(toOutboxRow);
  }

  /** Stops the outbox and closes the pool it created (never a pool you passed in). Idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#options.ownsPool) await this.#options.pool.end();
  }

  #assertRunning(operation: string): void {
    if (this.#stopped) throw new OutboxStoppedError(operation);
  }
}
