import type * as IORedis from 'ioredis';

import { errorMessage, SinkUnavailableError } from '../../errors.js';
import { backoffMs } from '../../util/backoff.js';
import { beforeDeadline } from '../../util/deadline.js';
import { REDIS_SINK, type ResolvedRedisStreamOptions } from './redis-stream-options.js';

export type RedisClient = IORedis.Redis;
export type RedisConstructor = new (url: string, options: IORedis.RedisOptions) => RedisClient;

/** Reconnect pauses double from reconnectWaitMs up to max(this, reconnectWaitMs). */
const RECONNECT_CAP_MS = 5_000;
/** close() gives QUIT this long; a server that does not answer cannot hold stop(). */
const CLOSE_TIMEOUT_MS = 5_000;

/**
 * The sink's one ioredis client, created and connected by the first send (loading ioredis then).
 *
 * ioredis keeps the connection: after a loss it reconnects by itself, forever, with a capped
 * exponential pause (retryStrategy). What the sink changes is what happens to commands meanwhile:
 *   - `enableOfflineQueue: false`: a send while not connected fails at once instead of waiting in
 *     an offline queue that has no bound;
 *   - `maxRetriesPerRequest: 0` and `autoResendUnfulfilledCommands: false`: the XADDs in flight when
 *     the connection drops fail at once instead of being resent by the client on reconnect (the
 *     relay retries them, and knows it did: deliveriesCount);
 *   - `commandTimeout`: a reply that does not come (a stalled server) fails the command (the sink
 *     bounds each send itself too, from when it is asked: redis-stream-sink.ts).
 * The first connect is the one wait a send may do (bounded by connectTimeoutMs); a failed first
 * connect leaves ioredis reconnecting in the background like any loss.
 */
export class RedisStreamConnection {
  readonly #options: ResolvedRedisStreamOptions;
  readonly #loadClient: () => Promise<RedisConstructor>;
  #client: RedisClient | undefined;
  #connecting: Promise<RedisClient> | undefined;
  #lastError = '';
  #closed = false;
  /** Counts the client's connections ('close' ends each); #checked is the one whose database was checked. */
  #connection = 0;
  #checked = -1;
  #checking: Promise<RedisClient> | undefined;

  constructor(options: ResolvedRedisStreamOptions, loadClient: () => Promise<RedisConstructor>) {
    this.#options = options;
    this.#loadClient = loadClient;
  }

  /** The client when it is ready, or SinkUnavailableError: at once unless this is the first connect. */
  async client(): Promise<RedisClient> {
    if (this.#closed) throw new SinkUnavailableError(REDIS_SINK, 'the sink was closed');
    if (this.#connecting !== undefined) return await this.#connecting;
    const client = this.#client;
    if (client === undefined || client.status === 'end') return await this.#connect(client);
    if (client.status === 'ready') {
      return this.#options.db === undefined || this.#checked === this.#connection ? client : await this.#checkDatabase(client);
    }
    throw new SinkUnavailableError(
      REDIS_SINK,
      `not connected to ${this.#options.displayUrl} (${client.status}${this.#lastError === '' ? '' : `; last error: ${this.#lastError}`}); the client reconnects by itself`,
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#connecting?.catch(() => undefined);
    const client = this.#client;
    if (client === undefined) return;
    if (client.status === 'ready') {
      await beforeDeadline(
        client.quit().catch(() => undefined),
        CLOSE_TIMEOUT_MS,
        () => undefined,
      );
    }
    client.disconnect();
  }

  #connect(existing: RedisClient | undefined): Promise<RedisClient> {
    const connecting = (async () => {
      const client = existing ?? (await this.#create());
      try {
        await beforeDeadline(client.connect(), this.#options.connectTimeoutMs, () => {
          throw new Error(`no connection within ${this.#options.connectTimeoutMs} ms`);
        });
      } catch (error) {
        throw new SinkUnavailableError(REDIS_SINK, `cannot connect to ${this.#options.displayUrl} (${errorMessage(error)})`, {
          cause: error,
        });
      }
      if (this.#closed) {
        client.disconnect();
        throw new SinkUnavailableError(REDIS_SINK, 'the sink was closed');
      }
      return await this.#checkDatabase(client);
    })();
    this.#connecting = connecting;
    return connecting.finally(() => {
      this.#connecting = undefined;
    });
  }

  /**
   * The client, once its current connection is known to be in the configured database. ioredis
   * SELECTs it on every connect but reports a failure only as an 'error' event and goes on in
   * database 0, where every XADD would be confirmed and its row deleted, out of sight of the
   * consumers of the database named (`redis://host/16` on a server with 16 databases). So each
   * connection (a first connect, and every reconnect ioredis makes by itself: #connection counts
   * them) is SELECTed again by the first send that uses it, which waits for the answer. A failure
   * closes and drops the client: the send fails (its row is kept and retried) and the next one
   * connects anew and checks again. Database 0 needs no check: ioredis sends no SELECT for it.
   */
  #checkDatabase(client: RedisClient): RedisClient | Promise<RedisClient> {
    const { db } = this.#options;
    if (db === undefined) return client;
    this.#checking ??= this.#selectDatabase(client, db).finally(() => {
      this.#checking = undefined;
    });
    return this.#checking;
  }

  async #selectDatabase(client: RedisClient, db: number): Promise<RedisClient> {
    const connection = this.#connection;
    try {
      await beforeDeadline(client.select(db), this.#options.connectTimeoutMs, () => {
        throw new Error(`no answer to SELECT within ${this.#options.connectTimeoutMs} ms`);
      });
    } catch (error) {
      // Dropped, not only disconnected: its status stays 'ready' until the socket has closed, and
      // the next send would use it.
      client.disconnect();
      if (this.#client === client) this.#client = undefined;
      throw new SinkUnavailableError(
        REDIS_SINK,
        `cannot select database ${db} on ${this.#options.displayUrl} (${errorMessage(error)}); check the URL's path or redisOptions.db`,
        { cause: error },
      );
    }
    // A connection that closed meanwhile is not the one checked: the next send checks its successor.
    if (connection === this.#connection) this.#checked = connection;
    return client;
  }

  async #create(): Promise<RedisClient> {
    const Redis = await this.#loadClient();
    const { reconnectWaitMs } = this.#options;
    const client = new Redis(this.#options.url, {
      // Concurrent XADDs of one event-loop turn go out in one write (a pipeline): measured 1.25x
      // the sends per second of one write per command at 64 in flight. redisOptions may turn it off.
      enableAutoPipelining: true,
      ...this.#options.redisOptions,
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      commandTimeout: this.#options.confirmTimeoutMs,
      connectTimeout: this.#options.connectTimeoutMs,
      // Reconnect forever: a relay outlives Redis restarts. Sends meanwhile fail at once.
      retryStrategy: (attempt: number) => backoffMs(attempt, reconnectWaitMs, Math.max(RECONNECT_CAP_MS, reconnectWaitMs)),
      // READONLY: the node was demoted in place (a failover by Sentinel, a cluster manager, or a
      // DNS name or VIP moved to the new primary). The open connection would stay on the replica
      // and every XADD fail for good; a new connection finds wherever the address leads now. 1:
      // reconnect without resending (the failed XADD is the relay's to retry).
      reconnectOnError: (error: Error) => (error.message.startsWith('READONLY') ? 1 : false),
    });
    // Without a listener ioredis prints every connection error to the console; the sink keeps the
    // last one for its own messages instead (ioredis's errors name the address, not the password).
    client.on('error', (error: unknown) => {
      this.#lastError = errorMessage(error);
    });
    client.on('close', () => {
      this.#connection += 1;
    });
    this.#client = client;
    return client;
  }
}
