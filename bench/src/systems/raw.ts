/**
 * The practical limit of a Postgres queue on this machine: a table, a claim of 100 rows with
 * FOR UPDATE SKIP LOCKED held in the consumer's transaction, the handlers, one
 * `DELETE … WHERE id = ANY($1)`, COMMIT. Four statements and one commit per 100 messages, no
 * lease, no retries, no envelope: nothing a real outbox could do with less. Named (prepared)
 * statements, plain `pg`.
 */
import pg from 'pg';

import { packageVersion } from '../versions.js';
import { body, type ConsumeOptions, type Consumer, quietLogger, type System, type SystemInstance } from './system.js';

/** raw SQL's table: an identity key, the payload, a timestamp; nothing else (also the probes'). */
export const CREATE_TABLE =
  'CREATE TABLE raw_q (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())';
const CLAIM = { name: 'raw_claim', text: 'SELECT id, payload FROM raw_q ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED' };
const DELETE = 'DELETE FROM raw_q WHERE id = ANY($1::bigint[])';
/** raw SQL's one-message INSERT (also measured by the probes). */
export const INSERT = 'INSERT INTO raw_q (payload) VALUES ($1::jsonb)';
const INSERT_NOTIFY = `WITH i AS (INSERT INTO raw_q (payload) VALUES ($1::jsonb) RETURNING id) SELECT pg_notify('raw_q', 'bench') FROM i`;
/** raw SQL's multi-row INSERT (W2; also measured by the probes). */
export const INSERT_MANY = 'INSERT INTO raw_q (payload) SELECT unnest($1::jsonb[])';
const INSERT_MANY_NOTIFY = `WITH i AS (INSERT INTO raw_q (payload) SELECT unnest($1::jsonb[]) RETURNING id)
SELECT pg_notify('raw_q', 'bench') FROM (SELECT 1 FROM i LIMIT 1) AS one`;

class RawInstance implements SystemInstance {
  readonly #url: string;
  readonly #notify: boolean;

  constructor(url: string, notify: boolean) {
    this.#url = url;
    this.#notify = notify;
  }

  async setup(): Promise<void> {
    const client = new pg.Client({ connectionString: this.#url });
    await client.connect();
    await client.query(CREATE_TABLE);
    await client.end();
  }

  async publishOne(client: pg.PoolClient, n: number): Promise<void> {
    await client.query({
      name: this.#notify ? 'raw_insert_notify' : 'raw_insert',
      text: this.#notify ? INSERT_NOTIFY : INSERT,
      values: [JSON.stringify(body(n))],
    });
  }

  async publishBatch(client: pg.PoolClient, ns: readonly number[]): Promise<void> {
    await client.query({
      name: this.#notify ? 'raw_insert_many_notify' : 'raw_insert_many',
      text: this.#notify ? INSERT_MANY_NOTIFY : INSERT_MANY,
      values: [ns.map((n) => JSON.stringify(body(n)))],
    });
  }

  async consume(options: ConsumeOptions): Promise<Consumer> {
    const pool = new pg.Pool({ connectionString: this.#url, max: options.concurrency });
    pool.on('error', () => undefined);
    let stopping = false;
    const sleepers = new Set<() => void>();
    const wakeAll = (): void => {
      for (const wake of sleepers) wake();
      sleepers.clear();
    };
    let listener: pg.Client | undefined;
    if (this.#notify) {
      listener = new pg.Client({ connectionString: this.#url });
      await listener.connect();
      listener.on('notification', wakeAll);
      await listener.query('LISTEN raw_q');
    }
    // Without NOTIFY an idle loop polls every 50 ms; with it, NOTIFY wakes it and 1 s is the backstop.
    const idleMs = this.#notify ? 1000 : 50;
    const idle = (): Promise<void> =>
      new Promise((resolve) => {
        const timer = setTimeout(() => {
          sleepers.delete(done);
          resolve();
        }, idleMs);
        const done = (): void => {
          clearTimeout(timer);
          resolve();
        };
        sleepers.add(done);
      });
    const loop = async (): Promise<void> => {
      const client = await pool.connect();
      try {
        while (!stopping) {
          await client.query('BEGIN');
          const { rows } = await client.query<{ id: string; payload: { n: number } }>(CLAIM);
          if (rows.length === 0) {
            await client.query('COMMIT');
            await idle();
            continue;
          }
          for (const row of rows) options.onMessage(row.payload.n);
          await client.query({ name: 'raw_delete', text: DELETE, values: [rows.map((row) => row.id)] });
          await client.query('COMMIT');
        }
      } catch (error) {
        if (!stopping) quietLogger.error({ err: String(error) }, 'raw consumer loop failed');
      } finally {
        client.release();
      }
    };
    const loops = Array.from({ length: options.concurrency }, () => loop());
    return {
      stop: async () => {
        stopping = true;
        wakeAll();
        await Promise.all(loops);
        await listener?.end();
        await pool.end();
      },
    };
  }

  async remaining(): Promise<number> {
    const client = new pg.Client({ connectionString: this.#url });
    await client.connect();
    const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM raw_q');
    await client.end();
    return rows[0]?.n ?? -1;
  }

  async close(): Promise<void> {
    // nothing held between calls
  }
}

export function rawSystem(notify: boolean): System {
  return {
    id: notify ? 'raw+notify' : 'raw',
    label: notify ? 'raw SQL + NOTIFY' : 'raw SQL',
    version: `pg ${packageVersion('pg')}`,
    skips: notify
      ? { W3: 'same consumer as raw SQL (NOTIFY only changes publishing)', W5: 'txoutbox only', W6: 'txoutbox only' }
      : { W4: 'polls every 50 ms without NOTIFY: latency is the poll interval', W5: 'txoutbox only', W6: 'txoutbox only' },
    tuning: notify
      ? 'as raw SQL, plus pg_notify() inside the INSERT statement (one round trip) and LISTEN-woken consumers'
      : 'claim 100 with FOR UPDATE SKIP LOCKED in the consumer transaction, one DELETE = ANY per batch, named statements; C loops = concurrency C',
    create: (url) => new RawInstance(url, notify),
  };
}
