import pg from 'pg';
import { Outbox } from 'txoutbox';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
const outbox = new Outbox({ pool });
await outbox.migrate(); // idempotent: safe at every start

await pool.query('CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, total numeric NOT NULL)');
const client = await pool.connect();
try {
  await client.query('BEGIN');
  const { rows } = await client.query<{ id: number }>('INSERT INTO orders (total) VALUES ($1) RETURNING id', [42]);
  // Same client, same transaction: the event commits or rolls back with the order.
  await outbox.publish(client, 'order.created', { orderId: rows[0]?.id, total: 42 });
  await client.query('COMMIT');
} catch (error) {
  await client.query('ROLLBACK');
  throw error;
} finally {
  client.release();
}

console.log(await outbox.fetchUnprocessed({ queue: 'order.created' }));
await outbox.stop(); // never closes a pool you passed in
await pool.end();
