/**
 * The load: chain roots published by the product's own publish(), each in a transaction that
 * also writes its ledger row, so the ledger holds exactly the roots that committed (a COMMIT whose
 * answer was lost in an outage is in both or in neither). Publishes that fail during a fault are
 * counted and not retried: the accounting only follows what committed.
 */
import type pg from 'pg';

import { type ChainBody, hearClientErrors, rootBody } from '../handlers/chain.js';
import { HARNESS_APP } from './chaos-server.js';
import { INSERT_PUBLISHED, INSERT_PUBLISHED_MANY, OUTBOX_TABLE, QUEUE } from './ledger-sql.js';
import type { Product } from './product.js';

/** Publishes at once at most this many: a slow database slows the load instead of piling it up. */
const MAX_IN_FLIGHT = 8;
const TICK_MS = 100;

export class Load {
  published = 0;
  failed = 0;
  readonly #pool: pg.Pool;
  readonly #outbox: InstanceType<Product['txoutbox']['Outbox']>;
  readonly #chainLength: number;
  #nextChain = 1;
  /** Ordering keys for roots (keyed()); 0: none. */
  #keys = 0;
  #timer: NodeJS.Timeout | undefined;
  #owed = 0;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(product: Product, url: string, chainLength: number) {
    this.#pool = hearClientErrors(
      new product.pg.Pool({
        connectionString: url,
        max: MAX_IN_FLIGHT,
        application_name: HARNESS_APP,
        // A frozen server must not freeze the load generator (or the harness) forever.
        connectionTimeoutMillis: 3_000,
        query_timeout: 5_000,
      }),
    );
    // The load's own troubles (publishes refused during a fault) are counted, not logged over the progress line.
    const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
    this.#outbox = new product.txoutbox.Outbox({ pool: this.#pool, table: OUTBOX_TABLE, listen: false, logger: quiet });
    this.#chainLength = chainLength;
  }

  /**
   * From now on half the roots (odd chains) carry one of `keys` ordering keys, so a relay scenario
   * checks per-key order at the broker while unkeyed rows flow at full concurrency.
   */
  keyed(keys: number): void {
    this.#keys = keys;
  }

  /** The ordering key the root with chain key `key` (`<chain>:1`) was published with. */
  orderingKeyOf(key: string): string | undefined {
    return this.#orderingKey(Number(key.split(':')[0]));
  }

  #orderingKey(chain: number): string | undefined {
    return this.#keys === 0 || chain % 2 === 0 ? undefined : `k${String(Math.floor(chain / 2) % this.#keys)}`;
  }

  /** `count` roots in one transaction (a backlog to drain): one publishBatch() per ordering key. */
  async preload(count: number): Promise<void> {
    const groups = new Map<string | undefined, ChainBody[]>();
    for (let i = 0; i < count; i += 1) {
      const body = rootBody(this.#nextChain++, this.#chainLength);
      const key = this.#orderingKey(body.chain);
      const group = groups.get(key);
      if (group === undefined) groups.set(key, [body]);
      else group.push(body);
    }
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      for (const [orderingKey, bodies] of groups) {
        const ids = await this.#outbox.publishBatch(client, QUEUE, bodies, orderingKey === undefined ? {} : { orderingKey });
        await client.query(INSERT_PUBLISHED_MANY, [ids, bodies.map((b) => b.key), bodies.map((b) => b.poison)]);
      }
      await client.query('COMMIT');
      this.published += count;
    } finally {
      client.release();
    }
  }

  /** Publishes `ratePerSec` roots a second until stop(). */
  start(ratePerSec: number): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => {
      this.#owed += (ratePerSec * TICK_MS) / 1000;
      while (this.#owed >= 1 && this.#inFlight.size < MAX_IN_FLIGHT) {
        this.#owed -= 1;
        const work = this.#publishOne().finally(() => this.#inFlight.delete(work));
        this.#inFlight.add(work);
      }
      // What could not be sent while the database was slow is not owed later: no burst after a fault.
      this.#owed = Math.min(this.#owed, 1);
    }, TICK_MS);
  }

  async #publishOne(): Promise<void> {
    const body = rootBody(this.#nextChain++, this.#chainLength);
    let client: pg.PoolClient | undefined;
    try {
      client = await this.#pool.connect();
      await client.query('BEGIN');
      const orderingKey = this.#orderingKey(body.chain);
      const id = await this.#outbox.publish(client, QUEUE, body, orderingKey === undefined ? {} : { orderingKey });
      await client.query(INSERT_PUBLISHED, [id, body.key, null, body.poison]);
      await client.query('COMMIT');
      client.release();
      this.published += 1;
    } catch (error) {
      this.failed += 1;
      if (client !== undefined) {
        await client.query('ROLLBACK').catch(() => undefined);
        client.release(error instanceof Error ? error : new Error(String(error)));
      }
    }
  }

  /** Stops publishing and waits (bounded by the pool's query timeout) for publishes in flight. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await Promise.allSettled([...this.#inFlight]);
  }

  async close(): Promise<void> {
    await this.stop();
    await this.#outbox.stop().catch(() => undefined);
    await this.#pool.end().catch(() => undefined);
  }
}
