import type pg from 'pg';

import type { Outbox } from '../../src/index.js';
import { inTransaction } from './transaction.js';

/** Publishes `bodies` to `queue` in one committed transaction; returns their ids. */
export async function publishCommitted(
  outbox: Outbox,
  pool: pg.Pool,
  queue: string,
  bodies: readonly unknown[],
): Promise<string[]> {
  return await inTransaction(pool, (client) => outbox.publishBatch(client, queue, bodies));
}

/** Rows of `table` still in the outbox for `queue`. */
export async function remaining(pool: pg.Pool, queue: string, table = 'txoutbox.outbox'): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${table} WHERE queue = $1`, [queue]);
  return Number(rows[0]?.n);
}
