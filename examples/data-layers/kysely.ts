import { type Generated, Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { Outbox } from 'txoutbox';
import { fromKysely } from 'txoutbox/kysely';

interface Database {
  orders: { id: Generated<number>; total: number };
}

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
const outbox = new Outbox({ pool });
await outbox.migrate(); // idempotent: safe at every start

await db.schema
  .createTable('orders')
  .ifNotExists()
  .addColumn('id', 'serial', (column) => column.primaryKey())
  .addColumn('total', 'numeric', (column) => column.notNull())
  .execute();
await db.transaction().execute(async (trx) => {
  const order = await trx.insertInto('orders').values({ total: 42 }).returning('id').executeTakeFirstOrThrow();
  // Same transaction: the event commits or rolls back with the order.
  await outbox.publish(fromKysely(trx), 'order.created', { orderId: order.id, total: 42 });
});

console.log(await outbox.fetchUnprocessed({ queue: 'order.created' }));
await outbox.stop(); // never closes a pool you passed in
await db.destroy(); // ends the pool
