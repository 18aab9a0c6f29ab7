import type pg from 'pg';

import type { Outbox } from '../../src/index.js';
import { inTransaction } from './transaction.js';

/** A distinct, valid W3C traceparent per row, so a relayed message's trace context can be told apart. */
export const traceparentOf = (seq: number): string => `00-${seq.toString(16).padStart(32, '0')}-${'ab'.repeat(8)}-01`;

/** Rows left in an outbox table. */
export async function rowCount(pool: pg.Pool, table: string): Promise<number> {
  const result = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
  return Number(result.rows[0]?.n);
}

/**
 * Publishes `count` rows for a relay's end-to-end test, in transactions of 100: payload {key, seq},
 * `keys` ordering keys round-robin, a correlation id, an `x-seq` header and trace context each.
 */
export async function publishRelayRows(pool: pg.Pool, outbox: Outbox, queue: string, count: number, keys: number): Promise<void> {
  for (let start = 0; start < count; start += 100) {
    await inTransaction(pool, async (client) => {
      for (let seq = start; seq < Math.min(count, start + 100); seq += 1) {
        const key = `key-${String(seq % keys)}`;
        await outbox.publish(
          client,
          queue,
          { key, seq },
          {
            correlationId: `corr-${String(seq)}`,
            orderingKey: key,
            headers: { 'x-seq': String(seq), traceparent: traceparentOf(seq), tracestate: 'txoutbox=e2e' },
          },
        );
      }
    });
  }
}
