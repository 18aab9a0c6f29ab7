/**
 * The chain handler as a `txoutbox run` consumer loads it (`handler:` in the scenario's YAML). The
 * runner's children import it; it takes the product tree and the database from the environment the
 * harness gave the runner, and publishes follow-ups through an Outbox of its own, as an application
 * running under the runner does (the runner's Outbox is not reachable from a handler).
 */
import { OUTBOX_TABLE } from '../lib/ledger-sql.js';
import { loadProduct } from '../lib/product.js';
import { chainHandler, hearClientErrors } from './chain.js';

function env(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`${name} is not set (the chaos harness sets it)`);
  return value;
}

const product = await loadProduct(env('CHAOS_PRODUCT_ROOT'));
const url = env('CHAOS_DATABASE_URL');
const pool = hearClientErrors(
  new product.pg.Pool({
    connectionString: url,
    max: Number(process.env.CHAOS_HANDLER_POOL_SIZE ?? '6'),
    // The application's own timeouts: a handler must not hang on a dead connection forever.
    connectionTimeoutMillis: 5_000,
    query_timeout: 10_000,
    keepAlive: true,
  }),
);
const publisher = new product.txoutbox.Outbox({ connectionString: url, table: OUTBOX_TABLE, poolSize: 1, listen: false });

export default chainHandler({ pool, publisher, delayMs: Number(process.env.CHAOS_HANDLER_DELAY_MS ?? '0') });
