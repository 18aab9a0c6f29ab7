/**
 * Type tests of typed events (architecture/typed-events.md). Never run: compiled by
 * test/unit/typed-events-types.test.ts (and by `npm run typecheck`). Each `@ts-expect-error`
 * line must fail to compile: if a wrong queue name or body shape compiled, the directive would be
 * unused and tsc would fail the test.
 */
import type { Kysely, Transaction } from 'kysely';
import type pg from 'pg';
import { Registry } from 'prom-client';
import { z } from 'zod';

import { fromDrizzle } from '../../src/adapters/drizzle/index.js';
import { fromKysely } from '../../src/adapters/kysely/index.js';
import {
  type Handler,
  type InferInput,
  type InferOutput,
  type Message,
  Outbox,
  type QueueName,
  type RelaySink,
  type StandardSchemaV1,
} from '../../src/index.js';
import { queueStateCollector } from '../../src/prometheus/index.js';

declare const client: pg.PoolClient;
declare const pool: pg.Pool;
declare const sink: RelaySink;

/** Compiles only when A and B are the same type (the usual identity-of-functions idiom). */
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
/** `expectTrue<Equal<A, B>>(true)` compiles only when A and B are the same type. */
function expectTrue<T extends true>(value: T): T {
  return value;
}
/** Reads a value in a line that must (or must not) compile. */
const used: unknown[] = [];
function use(value: unknown): void {
  used.push(value);
}

// 1. An interface as the queue map.
interface AppEvents {
  'order.created': { orderId: string; total: number };
  'order.shipped': { orderId: string; carrier: 'ups' | 'dhl' };
}
const app = new Outbox<AppEvents>({ pool });

void app.publish(client, 'order.created', { orderId: 'o1', total: 10 });
void app.publishBatch(client, 'order.shipped', [{ orderId: 'o1', carrier: 'dhl' }]);
void app.cancelTimer(client, 'order.created', 'timer-1');
// @ts-expect-error a queue that is not in the map
void app.publish(client, 'order.craeted', { orderId: 'o1', total: 10 });
// @ts-expect-error a body of the wrong shape (total is a number)
void app.publish(client, 'order.created', { orderId: 'o1', total: '10' });
// @ts-expect-error a body missing a field
void app.publish(client, 'order.created', { orderId: 'o1' });
// @ts-expect-error another queue's body
void app.publish(client, 'order.shipped', { orderId: 'o1', total: 10 });
// @ts-expect-error one wrong body in a batch
void app.publishBatch(client, 'order.shipped', [{ orderId: 'o1', carrier: 'fedex' }]);
// @ts-expect-error cancelTimer of a queue that is not in the map
void app.cancelTimer(client, 'order.cancelled', 'timer-1');
// @ts-expect-error relay of a queue that is not in the map
app.relay('order.cancelled', sink);
app.relay(['order.created', 'order.shipped'], sink);

app.subscribe('order.created', async (message) => {
  use(message);
  expectTrue<Equal<typeof message.body, { orderId: string; total: number }>>(true);
  // @ts-expect-error no such field on this queue's body
  use(message.body.carrier);
  await Promise.resolve();
});
app.subscribe(['order.created', 'order.shipped'], (message) => {
  use(message);
  expectTrue<Equal<typeof message.body, AppEvents['order.created'] | AppEvents['order.shipped']>>(true);
});
// @ts-expect-error subscribe to a queue that is not in the map
app.subscribe('order.cancelled', () => undefined);
// @ts-expect-error a handler written for another queue's body
app.subscribe('order.created', (message: Message<{ carrier: string }>) => {
  use(message.body.carrier);
});
// @ts-expect-error 0.1's asserted body type is refused on a typed Outbox
app.subscribe<{ anything: true }>('order.created', () => undefined);

// A handler written apart from subscribe().
const onShipped: Handler<AppEvents['order.shipped']> = (message) => {
  use(message.body.carrier);
};
app.subscribe('order.shipped', onShipped);

// Through the data-layer adapters: the executor is separate from the typing.
declare const trx: Transaction<{ orders: { id: string } }>;
declare const db: Kysely<{ orders: { id: string } }>;
use(db);
void app.publish(fromKysely(trx), 'order.created', { orderId: 'o1', total: 10 });
// @ts-expect-error a wrong body through the Kysely adapter
void app.publish(fromKysely(trx), 'order.created', { orderId: 1, total: 10 });
declare const drizzleTx: Parameters<typeof fromDrizzle>[0];
// @ts-expect-error a wrong queue through the Drizzle adapter
void app.publish(fromDrizzle(drizzleTx), 'order.craeted', { orderId: 'o1', total: 10 });

// 2. A schema map: the Outbox's types are inferred from the schemas.
const orderCreated = z.object({ orderId: z.string(), total: z.number(), currency: z.string().default('EUR') });
const shipped = z.object({ orderId: z.string(), at: z.iso.datetime() });
const typed = new Outbox({ pool, schemas: { 'order.created': orderCreated, 'order.shipped': shipped } });

// publish takes the schema's input (currency has a default: optional)...
void typed.publish(client, 'order.created', { orderId: 'o1', total: 10 });
void typed.publishBatch(client, 'order.shipped', [{ orderId: 'o1', at: '2026-01-01T00:00:00Z' }]);
// ...and the handler gets its output (currency is always there).
typed.subscribe('order.created', (message) => {
  use(message);
  expectTrue<Equal<typeof message.body, { orderId: string; total: number; currency: string }>>(true);
  expectTrue<Equal<typeof message.body, InferOutput<typeof orderCreated>>>(true);
});
expectTrue<Equal<Parameters<typeof typed.publish<'order.created'>>[2], InferInput<typeof orderCreated>>>(true);
// @ts-expect-error a queue without a schema is not in the inferred map
void typed.publish(client, 'order.cancelled', {});
// @ts-expect-error a body the schema's input type refuses
void typed.publish(client, 'order.created', { orderId: 'o1', total: 'ten' });
// @ts-expect-error a batch body the schema's input type refuses
void typed.publishBatch(client, 'order.shipped', [{ orderId: 'o1' }]);

// 3. A queue map and schemas: each schema must produce its queue's body.
const checked = new Outbox<AppEvents>({
  pool,
  schemas: { 'order.created': z.object({ orderId: z.string(), total: z.number() }) },
});
use(checked);
const mismatched = new Outbox<AppEvents>({
  pool,
  // @ts-expect-error this schema's output is not the map's body for the queue
  schemas: { 'order.created': z.object({ orderId: z.number(), total: z.number() }) },
});
use(mismatched);
// @ts-expect-error a schema for a queue the map does not have
const stray = new Outbox<AppEvents>({ pool, schemas: { 'order.cancelled': z.object({}) } });
use(stray);
// @ts-expect-error not a Standard Schema
const notSchema = new Outbox({ pool, schemas: { 'order.created': { parse: (v: unknown) => v } } });
use(notSchema);

// A Standard Schema written by hand (no library): the interface txoutbox exports.
const positive: StandardSchemaV1<number> = {
  '~standard': {
    version: 1,
    vendor: 'handmade',
    validate: (value) =>
      typeof value === 'number' && value > 0 ? { value } : { issues: [{ message: 'expected a positive number' }] },
  },
};
const handmade = new Outbox({ pool, schemas: { amounts: positive } });
void handmade.publish(client, 'amounts', 5);
// @ts-expect-error the hand-written schema's type is number
void handmade.publish(client, 'amounts', '5');

// 4. No map: 0.1's API, unchanged: any queue, any body, `unknown` bodies or an asserted type.
const plain = new Outbox({ connectionString: 'postgres://localhost/app' });
void plain.publish(client, 'anything', { at: 'all' });
void plain.publishBatch(client, 'anything', [1, 'two', { three: 3 }]);
void plain.cancelTimer(client, 'anything', 't');
plain.subscribe('anything', (message) => {
  use(message);
  expectTrue<Equal<typeof message.body, unknown>>(true);
});
plain.subscribe<{ n: number }>('anything', (message) => {
  use(message);
  expectTrue<Equal<typeof message.body, { n: number }>>(true);
});
plain.relay('anything', sink);
const queue: string = 'runtime-name';
void plain.publish(client, queue, null);
// Code that names the class's instance type without its parameters keeps the untyped API.
declare const instance: InstanceType<typeof Outbox>;
void instance.publish(client, 'anything', 1);
expectTrue<Equal<QueueName<AnyMap>, string>>(true);
type AnyMap = Record<string, unknown>;
const annotated: Outbox = plain;
use(annotated);
// A typed Outbox still fits where a plain one is expected (queueStateCollector, your own helpers).
const widened: Outbox = typed;
const widenedApp: Outbox = app;
use([widened, widenedApp]);
use(queueStateCollector(app, { registry: new Registry() }));
