import postgres from 'postgres';
import { Outbox } from 'txoutbox';
import { fromPostgres } from 'txoutbox/postgres';

const url = process.env.DATABASE_URL ?? 'postgres://localhost:5432/postgres';
const outbox = new Outbox({ connectionString: url }); // its own small pg pool, closed by stop()
await outbox.migrate(); // idempotent: safe at every start

const sql = postgres(url);
await sql`CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, total numeric NOT NULL)`;
await sql.begin(async (tx) => {
  const [order] = await tx<{ id: number }[]>`INSERT INTO orders (total) VALUES (${42}) RETURNING id`;
  // Same transaction: the event commits or rolls back with the order.
  await outbox.publish(fromPostgres(tx), 'order.created', { orderId: order?.id, total: 42 });
});

console.log(await outbox.fetchUnprocessed({ queue: 'order.created' }));
await outbox.stop();
await sql.end();
