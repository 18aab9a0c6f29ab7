import pg from 'pg';

import { beforeDeadline } from './deadline.js';
import type { Logger } from './logger.js';

/** Longest wait for a new connection of the pools and clients txoutbox opens. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** Idle time before TCP keepalive probes start on txoutbox's own connections. */
export const KEEPALIVE_IDLE_MS = 10_000;

/**
 * The connection settings of every connection txoutbox opens itself (its pool, the LISTEN and the
 * NOTIFY connections): a connect that does not answer fails after CONNECT_TIMEOUT_MS (node-postgres
 * otherwise waits forever, and `end()` during a connect leaves it pending), and TCP keepalive finds
 * idle connections whose peer died. A statement in flight is bounded by queryTimeoutMs instead:
 * Node cannot shorten the kernel's probe interval, so keepalive alone takes minutes.
 */
export function ownConnectionConfig<C extends pg.ClientConfig>(config: C): C {
  return {
    ...config,
    connectionTimeoutMillis: config.connectionTimeoutMillis ?? CONNECT_TIMEOUT_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: config.keepAliveInitialDelayMillis ?? KEEPALIVE_IDLE_MS,
  };
}

/** A pool txoutbox created from a connection string, and the bounded way to close it. */
export interface OwnedPool {
  readonly pool: pg.Pool;
  /**
   * `pool.end()`, but within `ms`: connections still busy then (a statement stuck behind a lock or
   * on a half-open socket; pool.end() waits for them) are destroyed, and their statements fail.
   */
  close(ms: number): Promise<void>;
}

export function createOwnedPool(connectionString: string, max: number, logger: Logger): OwnedPool {
  const pool = new pg.Pool(ownConnectionConfig({ connectionString, max }));
  // An idle client whose server connection dies emits 'error' on the pool; unhandled, that event
  // would crash the process. The client is discarded by the pool; the next checkout reconnects.
  pool.on('error', (error) => {
    logger.warn({ err: error.message }, 'idle database connection failed and was discarded');
  });
  // Every connection the pool holds, so close() can destroy those it would wait for.
  const clients = new Set<pg.Client>();
  pool.on('connect', (client) => clients.add(client));
  pool.on('remove', (client) => clients.delete(client));
  return {
    pool,
    async close(ms) {
      const ended = await beforeDeadline(
        pool.end().then(() => true),
        ms,
        () => false,
      );
      if (ended) return;
      logger.warn({ connections: clients.size }, 'pool connections still busy at stop; destroying them');
      for (const client of clients) client.connection.stream.destroy();
    },
  };
}
