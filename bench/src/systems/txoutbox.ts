/** txoutbox itself, from the repository's sources (tsx), as a user would configure it. */
import { readFileSync } from 'node:fs';

import pg from 'pg';

import type { Outbox } from '../../../src/index.js';
import { txoutbox } from '../library.js';
import { type PrometheusLibrary, type Seams, seamsOf } from './seams.js';
import {
  type Body,
  body,
  type ConsumeOptions,
  type Consumer,
  quietLogger,
  type RunOptions,
  type System,
  type SystemInstance,
} from './system.js';

export const FETCH_BATCH_SIZE = 100;

/** How publish wakes subscribers (the Outbox's `notify` option): the bench runs both side by side. */
type NotifyMode = 'after-commit' | 'in-transaction';

/**
 * The transactional-consume system's pool: every running handler holds a connection for its
 * transaction, plus the claim and the ack (architecture/transactional-consume.md): the largest
 * drain concurrency (16) + 2, with room to spare.
 */
const TRANSACTIONAL_POOL_SIZE = 20;

class TxOutboxInstance implements SystemInstance {
  readonly #url: string;
  readonly #options: RunOptions;
  readonly #notify: NotifyMode;
  #outbox: Outbox | undefined;
  seams: Seams | undefined;

  readonly #transactional: 'off' | 'on' | 'async-commit';
  readonly #rowLock: boolean;
  readonly #library: typeof txoutbox;
  /** The Prometheus seams of `library`'s build, when it is not the compiled library (seams.ts). */
  readonly #prometheus: PrometheusLibrary | undefined;

  constructor(
    url: string,
    options: RunOptions,
    notify: NotifyMode,
    transactional: 'off' | 'on' | 'async-commit' = 'off',
    rowLock = false,
    library: typeof txoutbox = txoutbox,
    prometheus?: PrometheusLibrary,
  ) {
    this.#library = library;
    this.#prometheus = prometheus;
    this.#url = url;
    this.#options = options;
    this.#notify = notify;
    this.#transactional = transactional;
    this.#rowLock = rowLock;
  }

  get #o(): Outbox {
    if (this.#outbox === undefined) throw new Error('setup() first');
    return this.#outbox;
  }

  async setup(): Promise<void> {
    const { seams } = this.#options;
    this.seams = seams === undefined || seams === 'off' ? undefined : await seamsOf(seams, this.#prometheus);
    this.#outbox = new this.#library.Outbox({
      connectionString: this.#url,
      logger: quietLogger,
      notify: this.#notify,
      ...(this.#transactional === 'off' ? {} : { poolSize: TRANSACTIONAL_POOL_SIZE }),
      ...(this.seams === undefined ? {} : { recorder: this.seams.recorder, middlewares: this.seams.middlewares }),
    });
    await this.#outbox.migrate();
  }

  async publishOne(client: pg.PoolClient, n: number): Promise<void> {
    await this.#o.publish(client, 'bench', body(n));
  }

  async publishBatch(client: pg.PoolClient, ns: readonly number[]): Promise<void> {
    await this.#o.publishBatch(
      client,
      'bench',
      ns.map((n) => body(n)),
    );
  }

  consume(options: ConsumeOptions): Promise<Consumer> {
    const outbox = this.#o;
    const asyncCommit = this.#transactional === 'async-commit';
    outbox.subscribe<Body>(
      'bench',
      asyncCommit
        ? async (message, ctx) => {
            // The transaction's COMMIT returns before its WAL flush (transactional-consume.md).
            await ctx.client.query('SET LOCAL synchronous_commit = off');
            options.onMessage(message.body.n);
          }
        : this.#options.asyncHandler === true
          ? async (message) => {
              options.onMessage(message.body.n);
              await Promise.resolve();
            }
          : (message) => {
              options.onMessage(message.body.n);
            },
      {
        name: 'bench',
        concurrency: options.concurrency,
        fetchBatchSize: FETCH_BATCH_SIZE,
        ...(this.#transactional === 'off' ? {} : { transactional: true }),
        ...(this.#rowLock ? { lease: 'row-lock' as const } : {}),
      },
    );
    outbox.start();
    return Promise.resolve({ stop: () => outbox.stop() });
  }

  async remaining(): Promise<number> {
    const client = new pg.Client({ connectionString: this.#url });
    await client.connect();
    const { rows } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM txoutbox.outbox WHERE queue = 'bench'`);
    await client.end();
    return rows[0]?.n ?? -1;
  }

  get spansPerRun(): number | undefined {
    return this.seams?.spansPerRun;
  }

  async spansExported(): Promise<number | undefined> {
    return await this.seams?.spans();
  }

  async close(): Promise<void> {
    try {
      await this.#outbox?.stop();
    } finally {
      // Even when stop() fails: a context manager left registered would tax every later run.
      this.seams?.close();
    }
  }
}

const version = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string })
  .version;

export const txoutboxSystem: System = {
  id: 'txoutbox',
  label: 'txoutbox',
  version,
  skips: {},
  tuning: `defaults (pool 10, LISTEN on, prepared statements, notify: 'after-commit') except subscribe({ concurrency: C, fetchBatchSize: ${FETCH_BATCH_SIZE} })`,
  create: (url, options) => new TxOutboxInstance(url, options, 'after-commit'),
};

/**
 * txoutbox with `notify: 'in-transaction'`: pg_notify inside the publish statement, so every
 * publishing transaction takes PostgreSQL's notify lock at COMMIT (decision 0004 measures both).
 * Only publishing differs, so the drain workloads run once, under `txoutbox`.
 */
export const txoutboxInTransactionSystem: System = {
  id: 'txoutbox-in-tx',
  label: 'txoutbox (notify in-tx)',
  version,
  skips: {
    W3: 'same consumer as txoutbox (the notify mode only changes publishing)',
    W5: 'txoutbox only',
    W6: 'txoutbox only',
  },
  tuning: "as txoutbox, with notify: 'in-transaction' (pg_notify inside the publish statement)",
  create: (url, options) => new TxOutboxInstance(url, options, 'in-transaction'),
};

/**
 * txoutbox with `subscribe({ transactional: true })`: every handler runs in a transaction on a
 * pooled connection and its ack DELETE commits in it (one BEGIN, DELETE, COMMIT per message instead
 * of one coalesced DELETE per batch). The handler is the same no-op, so W3 shows the overhead alone.
 */
export const txoutboxTransactionalSystem: System = {
  id: 'txoutbox-tx-consume',
  label: 'txoutbox (transactional consume)',
  version,
  skips: {
    W1: 'same producer as txoutbox (transactional only changes consuming)',
    W2: 'same producer as txoutbox (transactional only changes consuming)',
    W4: 'txoutbox only',
    W5: 'txoutbox only',
    W6: 'txoutbox only',
  },
  tuning: `as txoutbox, with subscribe({ transactional: true }) and poolSize ${TRANSACTIONAL_POOL_SIZE}`,
  create: (url, options) => new TxOutboxInstance(url, options, 'after-commit', 'on'),
};

/**
 * As txoutbox-tx-consume, with a handler that runs `SET LOCAL synchronous_commit = off` first: its
 * COMMIT (effects and ack together) no longer waits for the WAL flush. What the per-message flush
 * costs, and what a user who accepts losing the last commits of a crash (redelivered) can win.
 */
export const txoutboxTransactionalAsyncCommitSystem: System = {
  ...txoutboxTransactionalSystem,
  id: 'txoutbox-tx-consume-async',
  label: 'txoutbox (transactional, synchronous_commit off)',
  tuning: `as txoutbox-tx-consume, the handler runs SET LOCAL synchronous_commit = off`,
  create: (url, options) => new TxOutboxInstance(url, options, 'after-commit', 'async-commit'),
};

/**
 * txoutbox with `subscribe({ lease: 'row-lock' })` (architecture/row-lock-mode.md): batches of 100
 * claimed under FOR UPDATE SKIP LOCKED in a transaction each, their handlers run in C shared slots
 * and the rows deleted in the same transaction: no lease write, raw SQL's statements. Two loops
 * (ceil(C / 100) + 1) at every C here, so the default pool of 10 is enough.
 */
export const txoutboxRowLockSystem: System = {
  id: 'txoutbox-row-lock',
  label: "txoutbox (lease: 'row-lock')",
  version,
  skips: {
    W1: 'same producer as txoutbox (the lease mode only changes consuming)',
    W2: 'same producer as txoutbox (the lease mode only changes consuming)',
    W4: 'txoutbox only',
    W5: 'txoutbox only',
    W6: 'txoutbox only',
  },
  tuning: "as txoutbox, with subscribe({ lease: 'row-lock' }) (2 loops, C shared handler slots)",
  create: (url, options) => new TxOutboxInstance(url, options, 'after-commit', 'off', true),
};

/**
 * txoutbox with an `async` no-op handler (it awaits once), as most handlers are written: its run goes
 * through the handler's promise. W3 only: what an asynchronous handler's drain costs against the
 * synchronous one of `txoutbox` (BENCHMARKS.md, issue 18 round eighteen: the claim loop claimed half
 * batches behind such handlers).
 */
export const txoutboxAsyncHandlerSystem: System = {
  id: 'txoutbox-async',
  label: 'txoutbox (async handler)',
  version,
  skips: {
    W1: 'same producer as txoutbox (the handler only changes consuming)',
    W2: 'same producer as txoutbox (the handler only changes consuming)',
    W4: 'txoutbox only',
    W5: 'txoutbox only',
    W6: 'txoutbox only',
  },
  tuning: 'as txoutbox, with an async handler that awaits once',
  create: (url, options) => new TxOutboxInstance(url, { ...options, asyncHandler: true }, 'after-commit'),
};

/**
 * txoutbox (or its row-lock mode) from another build of the library: the A/B of a change in one
 * locked run (bench/src/probes/drain-cpu.ts, DRAIN_CPU_BASELINE=<a copy of dist/>).
 */
export function txoutboxSystemFrom(
  library: typeof txoutbox,
  label: string,
  rowLock: boolean,
  prometheus?: PrometheusLibrary,
): System {
  const base = rowLock ? txoutboxRowLockSystem : txoutboxSystem;
  return {
    ...base,
    label,
    create: (url, options) => new TxOutboxInstance(url, options, 'after-commit', 'off', rowLock, library, prometheus),
  };
}
