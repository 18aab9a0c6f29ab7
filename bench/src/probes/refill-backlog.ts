import type pg from 'pg';

import type { Outbox } from '../../../src/index.js';
import { body } from '../systems/system.js';

/**
 * A fresh backlog of `rows` bench bodies in queue `bench` of `table` (emptied first), published in
 * batches of 1,000 in one transaction, then analyzed and checkpointed: each drain of a probe starts
 * from the same table, its statistics current and no dirty pages of the load left to flush.
 */
export async function refillBacklog(admin: pg.ClientBase, outbox: Outbox, table: string, rows: number): Promise<void> {
  await admin.query(`TRUNCATE ${table}`);
  await admin.query('BEGIN');
  for (let from = 0; from < rows; from += 1000) {
    const size = Math.min(1000, rows - from);
    await outbox.publishBatch(
      admin,
      'bench',
      Array.from({ length: size }, (_, i) => body(from + i)),
    );
  }
  await admin.query('COMMIT');
  await admin.query('ANALYZE');
  await admin.query('CHECKPOINT');
}
