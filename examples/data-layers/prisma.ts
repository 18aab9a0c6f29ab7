import { PrismaPg } from '@prisma/adapter-pg';
import { Outbox } from 'txoutbox';
import { fromPrisma } from 'txoutbox/prisma';

import { PrismaClient } from './generated/prisma/client.js'; // npx prisma generate

const url = process.env.DATABASE_URL ?? 'postgres://localhost:5432/postgres';
const outbox = new Outbox({ connectionString: url }); // its own small pg pool, closed by stop()
await outbox.migrate(); // idempotent: safe at every start

const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: url }) });
await prisma.$executeRawUnsafe('CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, total numeric NOT NULL)');
await prisma.$transaction(async (tx) => {
  const order = await tx.order.create({ data: { total: 42 } });
  // Same transaction: the event commits or rolls back with the order.
  await outbox.publish(fromPrisma(tx), 'order.created', { orderId: order.id, total: 42 });
});

console.log(await outbox.fetchUnprocessed({ queue: 'order.created' }));
await outbox.stop();
await prisma.$disconnect();
