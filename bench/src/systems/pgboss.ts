/**
 * pg-boss through its own API. Fair, throughput-tuned options (the maintainers' documented levers):
 * - publish inside the caller's transaction with `send(…, { db })` / `insert(…, { db })` (its
 *   documented transactional path), `insert()` for batches;
 * - `useListenNotify: true` and the queue created with `notify: true`, so idle workers wake on
 *   insert instead of polling (W4);
 * - `work(q, { batchSize: 100, localConcurrency: C, burstWhenBatchFull: true })`: C workers each
 *   fetching 100 jobs per query and completing them with one call, fetching again at once while
 *   batches come back full;
 * - a pool of max(10, C + 4) connections so C workers never wait for one.
 */
import type pg from 'pg';
import { PgBoss } from 'pg-boss';

import { packageVersion } from '../versions.js';
import { type Body, body, type ConsumeOptions, type Consumer, quietLogger, type System, type SystemInstance } from './system.js';

const QUEUE = 'bench';

function inTransaction(client: pg.PoolClient): { executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }> } {
  return { executeSql: (text, values) => client.query(text, values) };
}

class PgBossInstance implements SystemInstance {
  readonly #url: string;
  #boss: PgBoss | undefined;
  #poolSize = 20;

  constructor(url: string) {
    this.#url = url;
  }

  get #b(): PgBoss {
    if (this.#boss === undefined) throw new Error('setup() first');
    return this.#boss;
  }

  async setup(): Promise<void> {
    await this.#startBoss(this.#poolSize);
    await this.#b.createQueue(QUEUE, { notify: true });
  }

  async #startBoss(max: number): Promise<void> {
    await this.#boss?.stop({ graceful: false, timeout: 1000 });
    const boss = new PgBoss({ connectionString: this.#url, useListenNotify: true, max });
    boss.on('error', (error: unknown) => {
      quietLogger.error({ err: String(error) }, 'pg-boss error');
    });
    await boss.start();
    this.#boss = boss;
  }

  async publishOne(client: pg.PoolClient, n: number): Promise<void> {
    await this.#b.send(QUEUE, body(n), { db: inTransaction(client) });
  }

  async publishBatch(client: pg.PoolClient, ns: readonly number[]): Promise<void> {
    await this.#b.insert(
      QUEUE,
      ns.map((n) => ({ data: body(n) })),
      { db: inTransaction(client) },
    );
  }

  async consume(options: ConsumeOptions): Promise<Consumer> {
    const max = Math.max(10, options.concurrency + 4);
    if (max !== this.#poolSize) {
      this.#poolSize = max;
      await this.#startBoss(max);
    }
    const boss = this.#b;
    await boss.work<Body>(QUEUE, { batchSize: 100, localConcurrency: options.concurrency, burstWhenBatchFull: true }, (jobs) => {
      for (const job of jobs) options.onMessage(job.data.n);
      return Promise.resolve();
    });
    return {
      stop: async () => {
        await boss.offWork(QUEUE, { wait: true });
      },
    };
  }

  async remaining(): Promise<number> {
    const { rows } = await this.#b
      .getDb()
      .executeSql(`SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state IN ('created', 'retry', 'active')`, [
        QUEUE,
      ]);
    return (rows[0] as { n?: number } | undefined)?.n ?? -1;
  }

  async close(): Promise<void> {
    await this.#boss?.stop({ graceful: true, timeout: 5000 });
  }
}

export const pgBossSystem: System = {
  id: 'pg-boss',
  label: 'pg-boss',
  version: packageVersion('pg-boss'),
  skips: { W5: 'txoutbox only', W6: 'txoutbox only' },
  tuning:
    'send/insert with { db } in the caller transaction; useListenNotify + queue notify; work({ batchSize: 100, localConcurrency: C, burstWhenBatchFull: true }); pool max(10, C+4)',
  create: (url) => new PgBossInstance(url),
};
