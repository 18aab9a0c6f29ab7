import { Outbox } from 'txoutbox';
import { fromTypeORM } from 'txoutbox/typeorm';
import { DataSource, EntitySchema } from 'typeorm';

// TypeORM types the options as a class; a plain object is what it documents and reads.
// eslint-disable-next-line @typescript-eslint/no-unsafe-class-instance-assignment
const Order = new EntitySchema<{ id: number; total: string }>({
  name: 'Order',
  tableName: 'orders',
  columns: { id: { type: Number, primary: true, generated: true }, total: { type: 'numeric' } },
});

const url = process.env.DATABASE_URL ?? 'postgres://localhost:5432/postgres';
const outbox = new Outbox({ connectionString: url }); // its own small pg pool, closed by stop()
await outbox.migrate(); // idempotent: safe at every start

const dataSource = await new DataSource({ type: 'postgres', url, entities: [Order] }).initialize();
await dataSource.query('CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, total numeric NOT NULL)');
await dataSource.transaction(async (manager) => {
  const order = await manager.save(Order, { total: '42' });
  // Same transaction: the event commits or rolls back with the order.
  await outbox.publish(fromTypeORM(manager), 'order.created', { orderId: order.id, total: 42 });
});

console.log(await outbox.fetchUnprocessed({ queue: 'order.created' }));
await outbox.stop();
await dataSource.destroy();
