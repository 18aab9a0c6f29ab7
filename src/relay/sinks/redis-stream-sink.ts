import { errorMessage, SinkRefusedError, SinkUnavailableError } from '../../errors.js';
import { beforeDeadline } from '../../util/deadline.js';
import type { RelayMessage, RelaySink, SendContext } from '../sink.js';
import { abortable } from './abortable.js';
import { loadPeer } from './load-peer.js';
import { type RedisClient, type RedisConstructor, RedisStreamConnection } from './redis-stream-connection.js';
import {
  REDIS_SINK,
  type RedisStreamSinkOptions,
  type ResolvedRedisStreamOptions,
  resolveRedisStreamOptions,
} from './redis-stream-options.js';

export type { RedisStreamSinkOptions } from './redis-stream-options.js';

/** A Redis Streams sink, with the count of XADDs Redis confirmed. */
export interface RedisStreamSink extends RelaySink {
  /** Since creation: sends whose XADD Redis answered with an entry id. */
  readonly stats: { readonly confirmed: number };
  /** Connected and answering PING within confirmTimeoutMs of being asked (queued or not). Never throws. */
  check(): Promise<boolean>;
}

/**
 * The fields of every entry, in this order (architecture/relay.md, "Redis Streams sink"):
 *   id       the row's messageId (`<table>:<source>:<row id>`): consumers deduplicate on it
 *   payload  the stored body, byte for byte
 *   headers  the row's headers as one JSON object (content-type, correlation-id, traceparent, ...)
 */
export const ENTRY_FIELDS = { id: 'id', payload: 'payload', headers: 'headers' } as const;

/**
 * Redis error codes (the reply's first word) that no retry can fix for this row: the key holds
 * another type than a stream, or the sink's ACL user may not write that key. Everything else (OOM,
 * READONLY after a failover, LOADING, MISCONF, BUSY, a lost connection) can clear by itself.
 */
const REFUSED_REPLIES = new Set(['WRONGTYPE', 'NOPERM']);

/** ROLE's replies for a user whose ACL refuses it, or a server or proxy that does not know it. */
const ROLE_REFUSED = /^(NOPERM|ERR unknown command)/;

/**
 * Relays rows to Redis Streams (architecture/relay.md, "Redis Streams sink"): one
 * `XADD <stream> [MAXLEN ~ n] * id <messageId> payload <bytes> headers <json>` per row, resolved by
 * Redis's reply (the entry id). Redis cannot deduplicate: a resend after a lost reply or a relay
 * crash appends a second entry with the same `id` field, and consumers skip ids they have seen.
 *
 * Concurrent sends share writes: ioredis auto-pipelining sends every XADD of one event-loop turn
 * in one write, and Redis answers them in order.
 */
export function redisStreamSink(options: RedisStreamSinkOptions): RedisStreamSink {
  const resolved = resolveRedisStreamOptions(options);
  return createRedisStreamSink(resolved, () => loadPeer('ioredis', 'redisStreamSink()'));
}

/**
 * redisStreamSink() with the client loader as a parameter (tests point it at a module that does not
 * exist). Typed `unknown`: this file's declarations are public and must not name ioredis's types.
 */
export function createRedisStreamSink(resolved: ResolvedRedisStreamOptions, loadClient: () => Promise<unknown>): RedisStreamSink {
  const connection = new RedisStreamConnection(resolved, async () => constructorOf(await loadClient()));
  const stats = { confirmed: 0 };

  async function send(message: RelayMessage, context: SendContext): Promise<void> {
    context.signal.throwIfAborted();
    const stream = resolved.streamOf(message);
    const client = await abortable(connection.client(), context.signal);
    try {
      await abortable(
        withinConfirmTimeout(
          xadd(
            client,
            stream,
            ...resolved.trim,
            '*',
            ENTRY_FIELDS.id,
            message.messageId,
            ENTRY_FIELDS.payload,
            message.payload,
            ENTRY_FIELDS.headers,
            headersJson(message),
          ),
          `no XADD reply for "${stream}" within ${resolved.confirmTimeoutMs} ms`,
        ),
        context.signal,
      );
    } catch (error) {
      if (context.signal.aborted) throw error;
      throw classify(error, stream);
    }
    stats.confirmed += 1;
  }

  /**
   * `reply`, or a SinkUnavailableError once confirmTimeoutMs has passed since it was asked. ioredis's
   * commandTimeout is not that bound: with auto-pipelining it keeps one batch in flight per
   * connection and queues later commands unsent, and a command's timeout starts only when it is
   * written. Against a silent server a send asked behind a stuck batch would wait up to twice the
   * timeout. The command itself stays queued (it cannot be recalled) and its late result is dropped.
   */
  function withinConfirmTimeout<T>(reply: Promise<T>, said: string): Promise<T> {
    return beforeDeadline(reply, resolved.confirmTimeoutMs, () => {
      throw new SinkUnavailableError(REDIS_SINK, said);
    });
  }

  /**
   * Whether the node can take an XADD: ROLE says `master`. A PING alone is answered by a replica,
   * and a primary demoted in place (READONLY to every XADD) was reported up. A user whose ACL
   * refuses ROLE (or a proxy that does not know it) is checked by PING, remembered per sink.
   */
  let roleRefused = false;
  async function writable(client: RedisClient): Promise<boolean> {
    if (!roleRefused) {
      try {
        const [role] = await client.role();
        return role === 'master';
      } catch (error) {
        // Only a refusal that will not change: a BUSY script or a proxy's passing error is a
        // failed check now, not a reason to stop asking ROLE (and to miss a demotion) for good.
        if (!(error instanceof Error && error.name === 'ReplyError' && ROLE_REFUSED.test(error.message))) throw error;
        roleRefused = true;
      }
    }
    await client.ping();
    return true;
  }

  /** An XADD failure as the relay must see it: SinkRefusedError when no retry can help, else retryable. */
  function classify(error: unknown, stream: string): Error {
    if (error instanceof SinkUnavailableError) return error;
    const said = errorMessage(error);
    if (error instanceof Error && error.name === 'ReplyError') {
      const code = said.split(' ', 1)[0] ?? '';
      if (REFUSED_REPLIES.has(code))
        return new SinkRefusedError(REDIS_SINK, `${said} (XADD to stream "${stream}")`, { cause: error });
      return new SinkUnavailableError(REDIS_SINK, `Redis did not append to "${stream}": ${said}`, { cause: error });
    }
    if (/command timed out/i.test(said)) {
      return new SinkUnavailableError(REDIS_SINK, `no XADD reply for "${stream}" within ${resolved.confirmTimeoutMs} ms`, {
        cause: error,
      });
    }
    // MaxRetriesPerRequestError, "Connection is closed.", "Stream isn't writeable...": the
    // connection dropped with this XADD in flight or before it left. It may or may not be appended.
    return new SinkUnavailableError(REDIS_SINK, `the XADD to "${stream}" failed: ${said}`, { cause: error });
  }

  return {
    name: REDIS_SINK,
    stats,
    send,
    async check(): Promise<boolean> {
      try {
        const client = await connection.client();
        return await withinConfirmTimeout(writable(client), `no ROLE or PING reply within ${resolved.confirmTimeoutMs} ms`);
      } catch {
        return false;
      }
    },
    close: () => connection.close(),
  };
}

/**
 * XADD through the client's own `xadd` method. Not `call('XADD', ...)`: ioredis 5.0.0 with
 * auto-pipelining sent such a call with the stream name as the command ("ERR unknown command"),
 * seen when checking the peer range's floor. The method's overloads want literal tuples; the
 * arguments here are built at run time, hence the one cast.
 */
function xadd(client: RedisClient, stream: string, ...args: (string | Buffer)[]): Promise<string | null> {
  return (client.xadd as (key: string, ...rest: (string | Buffer)[]) => Promise<string | null>).call(client, stream, ...args);
}

/** The row's headers with `correlation-id` added when they lack it, as one JSON object. */
function headersJson(message: RelayMessage): string {
  if (Object.hasOwn(message.headers, 'correlation-id')) return JSON.stringify(message.headers);
  return JSON.stringify({ ...message.headers, 'correlation-id': message.correlationId });
}

/** The Redis class: ioredis's CommonJS export seen through import() sits on `default` (and `Redis`). */
function constructorOf(module: unknown): RedisConstructor {
  const candidates = [module, (module as { default?: unknown } | null)?.default, (module as { Redis?: unknown } | null)?.Redis];
  const Redis = candidates.find((c) => typeof c === 'function');
  if (Redis === undefined) throw new Error('the "ioredis" module exports no Redis class: is it ioredis 5.x?');
  return Redis as RedisConstructor;
}
