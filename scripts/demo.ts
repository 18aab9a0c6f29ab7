/**
 * `npm start`: a real PostgreSQL (embedded, or DATABASE_URL), the outbox schema, one transaction
 * that writes orders and publishes their events, then the events read back. Stops cleanly.
 */
import pg from 'pg';

import { startEmbeddedPostgres } from '../src/embedded/index.js';
import { Outbox } from '../src/index.js';

const external = process.env.DATABASE_URL;
const server = external === undefined || external === '' ? await startEmbeddedPostgres() : undefined;
const connectionString = server?.connectionString ?? external;
console.log(server === undefined ? 'using DATABASE_URL' : `embedded PostgreSQL on 127.0.0.1:${server.port}`);

const pool = new pg.Pool({ connectionString });
const outbox = new Outbox({ pool });
try {
  const { applied } = await outbox.migrate();
  console.log(applied.length > 0 ? `migrated: ${applied.join(', ')}` : 'schema up to date');
  await pool.query('CREATE TABLE IF NOT EXISTS demo_orders (id serial PRIMARY KEY, item text NOT NULL)');

  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    for (const item of ['coffee', 'bagel', 'juice']) {
      const { rows } = await client.query<{ id: number }>('INSERT INTO demo_orders (item) VALUES ($1) RETURNING id', [item]);
      await outbox.publish(client, 'order.created', { orderId: rows[0]?.id, item });
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }

  const rows = await outbox.fetchUnprocessed({ queue: 'order.created', limit: 10 });
  console.log(`${rows.length} message(s) in ${outbox.table}, committed with their orders:`);
  for (const row of rows)
    console.log(`  #${row.id} ${row.queue} ${JSON.stringify(row.body)} correlation-id=${row.headers['correlation-id'] ?? ''}`);
} finally {
  await outbox.stop();
  await pool.end();
  await server?.stop();
}
console.log('stopped cleanly');
