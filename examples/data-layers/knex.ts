import knexFactory from 'knex';
import { Outbox } from 'txoutbox';
import { fromKnex } from 'txoutbox/knex';

interface Order {
  id: number;
  total: number;
}

const url = process.env.DATABASE_URL ?? 'postgres://postgres@localhost:5432/postgres';
const outbox = new Outbox({ connectionString: url }); // its own small pg pool, closed by stop()
await outbox.migrate(); // idempotent: safe at every start

const knex = knexFactory({ client: 'pg', connection: url });
if (!(await knex.schema.hasTable('orders'))) {
  await knex.schema.createTable('orders', (table) => {
    table.increments('id');
    table.decimal('total').notNullable();
  });
}
await knex.transaction(async (trx) => {
  const [order] = await trx<Order>('orders').insert({ total: 42 }).returning('id');
  // Same transaction: the event commits or rolls back with the order.
  await outbox.publish(fromKnex(trx), 'order.created', { orderId: order?.id, total: 42 });
});

console.log(await outbox.fetchUnprocessed({ queue: 'order.created' }));
await outbox.stop();
await knex.destroy();
