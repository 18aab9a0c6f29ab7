import { DataTypes, Sequelize } from 'sequelize';
import { Outbox } from 'txoutbox';
import { fromSequelize } from 'txoutbox/sequelize';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@localhost:5432/postgres';
const outbox = new Outbox({ connectionString: url }); // its own small pg pool, closed by stop()
await outbox.migrate(); // idempotent: safe at every start

const sequelize = new Sequelize(url, { logging: false });
const Order = sequelize.define(
  'Order',
  { total: { type: DataTypes.DECIMAL, allowNull: false } },
  { tableName: 'orders', timestamps: false },
);
await Order.sync();
await sequelize.transaction(async (t) => {
  const order = await Order.create({ total: 42 }, { transaction: t });
  // Same transaction: the event commits or rolls back with the order.
  await outbox.publish(fromSequelize(t), 'order.created', { orderId: order.get('id'), total: 42 });
});

console.log(await outbox.fetchUnprocessed({ queue: 'order.created' }));
await outbox.stop();
await sequelize.close();
