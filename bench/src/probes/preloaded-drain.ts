/**
 * The drain probes' shared steps (drain-cpu.ts, row-lock-ab.ts): a table preloaded the same way for
 * every system, and a drain that ends when every message was handled.
 */
import pg from 'pg';

import type { Consumer, SystemInstance } from '../systems/system.js';

/**
 * Messages 0 … rows − 1 in one transaction through the system's own batch publish, then ANALYZE and a
 * CHECKPOINT, so every drain starts from the same table and no checkpoint lands inside it.
 */
export async function preload(url: string, instance: SystemInstance, rows: number): Promise<void> {
  const producers = new pg.Pool({ connectionString: url, max: 1 });
  const client = await producers.connect();
  try {
    await client.query('BEGIN');
    for (let from = 0; from < rows; from += 1000) {
      await instance.publishBatch(
        client,
        Array.from({ length: Math.min(1000, rows - from) }, (_, i) => from + i),
      );
    }
    await client.query('COMMIT');
    await client.query('ANALYZE');
    await client.query('CHECKPOINT');
  } finally {
    client.release();
    await producers.end();
  }
}

/** Starts a consumer and resolves once it handled `rows` messages; the caller stops it. */
export async function drainAll(instance: SystemInstance, concurrency: number, rows: number): Promise<Consumer> {
  let seen = 0;
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const consumer = await instance.consume({
    concurrency,
    onMessage: () => {
      seen += 1;
      if (seen === rows) finish();
    },
  });
  await done;
  return consumer;
}
