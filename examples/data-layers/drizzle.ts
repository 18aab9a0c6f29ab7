import { drizzle } from 'drizzle-orm/node-postgres';
import { integer, pgTable, serial } from 'drizzle-orm/pg-core';
import pg from 'pg';
import { Outbox } from 'txoutbox';
import { fromDrizzle } from 'txoutbox/drizzle';

const orders = pgTable('orders', { id: serial('id').primaryKey(), total: integer('total').notNull() });

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
const db = drizzle({ client: pool });
const outbox = new Outbox({ pool });
await outbox.migrate(); // idempotent: safe at every start

await db.execute('CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, total integer NOT NULL)');
await db.transaction(async (tx) => {
  const [order] = await tx.insert(orders).values({ total: 42 }).returning({ id: orders.id });
  // Same transaction: the event commits or rolls back with the order.
  await outbox.publish(fromDrizzle(tx), 'order.created', { orderId: order?.id, total: 42 });
});

console.log(await outbox.fetchUnprocessed({ queue: 'order.created' }));
await outbox.stop(); // never closes a pool you passed in
await pool.end();
