/**
 * graphile-worker through its own API. Fair, throughput-tuned options (its performance docs'
 * batching levers, which the maintainer measures at 9–19×):
 * - publish inside the caller's transaction with its SQL API, `graphile_worker.add_job()` /
 *   `add_jobs()` (the documented way to enqueue atomically with your data; the JS `addJob` runs
 *   on its own pool, outside the caller's transaction);
 * - `run({ concurrency: C })` with `preset.worker.localQueue.size = 100` (one `get_jobs` locks 100)
 *   and `completeJobBatchDelay: 0` (completions of one tick share one DELETE);
 * - `maxPoolSize: max(10, C + 2)`, its own recommendation.
 * It wakes on its built-in `jobs:insert` NOTIFY.
 */
import { Logger, run, runMigrations, type Runner } from 'graphile-worker';
import pg from 'pg';

import { packageVersion } from '../versions.js';
import { type Body, body, type ConsumeOptions, type Consumer, quietLogger, type System, type SystemInstance } from './system.js';

const ADD_JOB = { name: 'gw_add_job', text: `SELECT graphile_worker.add_job('bench', $1::json)` };
const ADD_JOBS = {
  name: 'gw_add_jobs',
  text: `SELECT graphile_worker.add_jobs(ARRAY(
  SELECT json_populate_record(NULL::graphile_worker.job_spec, json_build_object('identifier', 'bench', 'payload', p))
  FROM unnest($1::json[]) AS p))`,
};

const silentLogger = new Logger(() => (level, message) => {
  if (level === 'error') quietLogger.error({}, `graphile-worker: ${message}`);
});

class GraphileInstance implements SystemInstance {
  readonly #url: string;

  constructor(url: string) {
    this.#url = url;
  }

  async setup(): Promise<void> {
    await runMigrations({ connectionString: this.#url, logger: silentLogger });
  }

  async publishOne(client: pg.PoolClient, n: number): Promise<void> {
    await client.query({ ...ADD_JOB, values: [JSON.stringify(body(n))] });
  }

  async publishBatch(client: pg.PoolClient, ns: readonly number[]): Promise<void> {
    await client.query({ ...ADD_JOBS, values: [ns.map((n) => JSON.stringify(body(n)))] });
  }

  async consume(options: ConsumeOptions): Promise<Consumer> {
    const runner: Runner = await run({
      connectionString: this.#url,
      concurrency: options.concurrency,
      maxPoolSize: Math.max(10, options.concurrency + 2),
      noHandleSignals: true,
      logger: silentLogger,
      taskList: {
        bench: (payload) => {
          options.onMessage((payload as Body).n);
        },
      },
      preset: { worker: { localQueue: { size: 100 }, completeJobBatchDelay: 0 } },
    });
    return { stop: () => runner.stop() };
  }

  async remaining(): Promise<number> {
    const client = new pg.Client({ connectionString: this.#url });
    await client.connect();
    const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM graphile_worker.jobs');
    await client.end();
    return rows[0]?.n ?? -1;
  }

  async close(): Promise<void> {
    // the runner is stopped by its consumer
  }
}

export const graphileSystem: System = {
  id: 'graphile',
  label: 'graphile-worker',
  version: packageVersion('graphile-worker'),
  skips: { W5: 'txoutbox only', W6: 'txoutbox only' },
  tuning:
    'graphile_worker.add_job()/add_jobs() in the caller transaction; run({ concurrency: C }) with localQueue.size 100, completeJobBatchDelay 0; maxPoolSize max(10, C+2)',
  create: (url) => new GraphileInstance(url),
};
