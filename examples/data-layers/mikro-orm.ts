import { defineEntity, MikroORM, p } from '@mikro-orm/postgresql';
import { Outbox } from 'txoutbox';
import { fromMikroORM } from 'txoutbox/mikro-orm';

const Order = defineEntity({
  name: 'Order',
  tableName: 'orders',
  properties: { id: p.integer().primary().autoincrement(), total: p.integer() },
});

const url = process.env.DATABASE_URL ?? 'postgres://localhost/app';
const outbox = new Outbox({ connectionString: url }); // its own small pg pool, closed by stop()
await outbox.migrate(); // idempotent: safe at every start

const orm = await MikroORM.init({ clientUrl: url, entities: [Order] });
await orm.em.getConnection().execute('CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, total int NOT NULL)');
await orm.em.transactional(async (em) => {
  const order = em.create(Order, { total: 42 });
  await em.flush(); // the order gets its id
  // Same transaction: the event commits or rolls back with the order.
  await outbox.publish(fromMikroORM(em), 'order.created', { orderId: order.id, total: 42 });
});

console.log(await outbox.fetchUnprocessed({ queue: 'order.created' }));
await outbox.stop();
await orm.close();
