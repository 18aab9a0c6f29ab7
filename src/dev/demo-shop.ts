import type pg from 'pg';

import { errorMessage } from '../errors.js';
import type { Outbox } from '../outbox.js';
import type { Logger } from '../util/logger.js';

export const DEMO_QUEUES = { emails: 'order.created', stock: 'stock.reserve' } as const;

const CREATE_ORDERS = `CREATE TABLE IF NOT EXISTS demo_orders (
  id bigserial PRIMARY KEY,
  item text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
)`;
const INSERT_ORDER = 'INSERT INTO demo_orders (item) VALUES ($1) RETURNING id';

const ITEMS = ['coffee', 'bagel', 'juice', 'croissant', 'tea'];

/**
 * The demo application: at a steady rate it writes an order and publishes its two events in the
 * same transaction (the thing txoutbox exists for). A failed transaction is logged and leaves
 * neither the order nor its events.
 */
export class DemoShop {
  readonly #pool: pg.Pool;
  readonly #outbox: Outbox;
  readonly #logger: Logger;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<void> = Promise.resolve();
  #busy = false;
  #published = 0;

  constructor(pool: pg.Pool, outbox: Outbox, logger: Logger) {
    this.#pool = pool;
    this.#outbox = outbox;
    this.#logger = logger;
  }

  /** Messages committed so far (two per order). */
  get published(): number {
    return this.#published;
  }

  async prepare(): Promise<void> {
    await this.#pool.query(CREATE_ORDERS);
  }

  start(ordersPerSecond: number): void {
    this.#timer = setInterval(
      () => {
        // One order at a time, and a tick while one is under way is skipped: a slow database slows
        // the shop down. Chained instead, the ticks of a stuck order piled up, and stop() waited for
        // every one of them.
        if (this.#busy) return;
        this.#busy = true;
        this.#inFlight = this.#placeOrder().finally(() => {
          this.#busy = false;
        });
      },
      Math.max(1, Math.round(1000 / ordersPerSecond)),
    );
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#inFlight;
  }

  async #placeOrder(): Promise<void> {
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      const item = ITEMS[Math.floor(Math.random() * ITEMS.length)] ?? 'coffee';
      const { rows } = await client.query<{ id: string }>(INSERT_ORDER, [item]);
      const order = { orderId: rows[0]?.id, item };
      await this.#outbox.publish(client, DEMO_QUEUES.emails, order);
      await this.#outbox.publish(client, DEMO_QUEUES.stock, order);
      await client.query('COMMIT');
      this.#published += 2;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      this.#logger.warn({ err: errorMessage(error) }, 'demo order failed; rolled back with its events');
    } finally {
      client.release();
    }
  }
}
