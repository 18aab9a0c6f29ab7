import { InvalidOptionError } from '../../errors.js';
import { integerOption } from '../../util/integer-option.js';
import { rejectUnknownOptions } from '../../util/known-options.js';
import { redactConnectionString } from '../../util/redact.js';
import { compileDestination, type Destination, type DestinationOf } from '../template.js';

/** Options of `redisStreamSink()` (architecture/relay.md, "Redis Streams sink"). */
export interface RedisStreamSinkOptions {
  /**
   * The Redis server: `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS. The password
   * is redacted wherever the sink shows the URL.
   */
  readonly url: string;
  /**
   * The stream (key) each row is appended to: fixed, a template (`events.{queue}`,
   * `{headers.tenant}:events`) or a function of the message. XADD creates it when missing.
   * @default '{queue}'
   */
  readonly stream?: Destination;
  /**
   * Trims the stream to about this many entries on every XADD (`MAXLEN ~ n`), so a stream nobody
   * trims does not grow without bound. Entries trimmed before a consumer read them are gone: size it
   * above the longest consumer lag you accept. @default none (no trimming)
   */
  readonly maxLen?: number;
  /**
   * `MAXLEN ~ n` (true: Redis trims whole macro nodes, at least n entries stay; cheap) or `MAXLEN = n`
   * (false: exactly n; costs more per XADD). Only with maxLen. @default true
   */
  readonly approximate?: boolean;
  /** How long a send waits for the XADD reply before it fails, to be retried (ioredis `commandTimeout`). @default 5000 */
  readonly confirmTimeoutMs?: number;
  /** How long the first connect (TCP, TLS, AUTH, the ready check) may take. @default 5000 */
  readonly connectTimeoutMs?: number;
  /**
   * First pause before a reconnect after the connection was lost; doubled per failed attempt, up to
   * max(5 s, this). @default 100
   */
  readonly reconnectWaitMs?: number;
  /**
   * Further ioredis options: `tls`, `username`, `password`, `db`, `connectionName`, `family`... The
   * sink owns the reconnect, queueing and timeout settings (the options above).
   */
  readonly redisOptions?: Readonly<Record<string, unknown>>;
}

export interface ResolvedRedisStreamOptions {
  readonly url: string;
  /** The URL as shown in messages: password masked. */
  readonly displayUrl: string;
  readonly streamOf: DestinationOf;
  /** The XADD trim arguments: [] or ['MAXLEN', '~' | '=', n]. */
  readonly trim: readonly string[];
  readonly confirmTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly reconnectWaitMs: number;
  readonly redisOptions: Readonly<Record<string, unknown>>;
  /**
   * The database the URL's path or redisOptions.db names, when not 0: selected and checked on
   * every connection (redis-stream-connection.ts), since ioredis only reports a failed SELECT as
   * an 'error' event and then writes to database 0.
   */
  readonly db: number | undefined;
}

export const REDIS_SINK = 'redis';

const KNOWN = [
  'url',
  'stream',
  'maxLen',
  'approximate',
  'confirmTimeoutMs',
  'connectTimeoutMs',
  'reconnectWaitMs',
  'redisOptions',
] as const;

/** ioredis options the sink sets itself: a caller's value would break the bounded-send contract. */
const OWNED_REDIS_OPTIONS = [
  'lazyConnect',
  'enableOfflineQueue',
  'maxRetriesPerRequest',
  'autoResendUnfulfilledCommands',
  'retryStrategy',
  'reconnectOnError',
  'commandTimeout',
  'connectTimeout',
  'host',
  'port',
  'path',
] as const;

export function resolveRedisStreamOptions(raw: RedisStreamSinkOptions): ResolvedRedisStreamOptions {
  // JavaScript callers and config files can pass anything: the types are no guarantee here.
  if (typeof (raw as unknown) !== 'object' || (raw as unknown) === null) {
    throw new InvalidOptionError({
      option: 'redisStreamSink options',
      value: raw,
      expected: 'an object such as { url: "redis://127.0.0.1:6379" }',
    });
  }
  rejectUnknownOptions(raw, 'redisStreamSink()', KNOWN);
  if (typeof raw.url !== 'string' || !/^rediss?:\/\/[^/]/.test(raw.url)) {
    throw new InvalidOptionError({
      option: 'url',
      value: raw.url,
      expected: 'a Redis URL such as "redis://127.0.0.1:6379" (rediss:// for TLS)',
      fix: 'Pass url.',
      redact: true,
    });
  }
  if (raw.approximate !== undefined && typeof raw.approximate !== 'boolean') {
    throw new InvalidOptionError({ option: 'approximate', value: raw.approximate, expected: 'true or false' });
  }
  if (raw.approximate !== undefined && raw.maxLen === undefined) {
    throw new InvalidOptionError({
      option: 'approximate',
      value: raw.approximate,
      expected: 'maxLen alongside it (approximate says how MAXLEN trims)',
      fix: 'Set maxLen, or leave approximate out.',
    });
  }
  const urlDb = checkUrl(raw.url);
  const maxLen = raw.maxLen === undefined ? undefined : integerOption('maxLen', raw.maxLen, 1, Number.MAX_SAFE_INTEGER, 0);
  const redisOptions = (raw.redisOptions ?? {}) as unknown as Record<string, unknown>;
  if (typeof (redisOptions as unknown) !== 'object' || (redisOptions as unknown) === null || Array.isArray(redisOptions)) {
    throw new InvalidOptionError({
      option: 'redisOptions',
      value: redisOptions,
      expected: 'an object of ioredis options (tls, username, password, db, connectionName, ...)',
      redact: true,
    });
  }
  for (const key of OWNED_REDIS_OPTIONS) {
    if (Object.hasOwn(redisOptions, key)) {
      throw new InvalidOptionError({
        option: `redisOptions.${key}`,
        value: redisOptions[key],
        expected: `no ${key}: the sink sets it (url, confirmTimeoutMs, connectTimeoutMs, reconnectWaitMs)`,
        fix: `Remove redisOptions.${key}; use the sink's own option.`,
        redact: true,
      });
    }
  }
  const db = databaseOf(urlDb, redisOptions.db);
  return {
    url: raw.url,
    displayUrl: redactConnectionString(raw.url),
    streamOf: compileDestination(REDIS_SINK, 'stream', raw.stream ?? '{queue}'),
    trim: maxLen === undefined ? [] : ['MAXLEN', raw.approximate === false ? '=' : '~', String(maxLen)],
    confirmTimeoutMs: integerOption('confirmTimeoutMs', raw.confirmTimeoutMs, 1, 600_000, 5_000),
    connectTimeoutMs: integerOption('connectTimeoutMs', raw.connectTimeoutMs, 1, 600_000, 5_000),
    reconnectWaitMs: integerOption('reconnectWaitMs', raw.reconnectWaitMs, 1, 600_000, 100),
    redisOptions,
    db: db === 0 ? undefined : db,
  };
}

/** The most databases a Redis server can be configured with (`databases`, an int). */
const MAX_DB = 2 ** 31 - 1;
const DB_TEXT = /^(?:0|[1-9][0-9]*)$/;

/**
 * What ioredis would make of the URL beyond host and credentials, checked: its path is the database
 * number (ioredis parseInt()s it, so `/events` became NaN and no SELECT: every XADD went to database
 * 0, confirmed, its row deleted), and its query parameters become ioredis options ahead of the
 * sink's own (`?enableOfflineQueue=no` would undo the bounded sends). Returns the path's database.
 */
function checkUrl(url: string): number | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidOptionError({
      option: 'url',
      value: url,
      expected: 'a Redis URL such as "redis://127.0.0.1:6379"',
      redact: true,
    });
  }
  const path = parsed.pathname;
  let db: number | undefined;
  if (path !== '' && path !== '/') {
    const text = path.slice(1);
    db = DB_TEXT.test(text) ? Number(text) : Number.NaN;
    if (!(db <= MAX_DB)) {
      throw new InvalidOptionError({
        option: 'url',
        value: redactConnectionString(url),
        expected: `a database number as the URL's path (redis://host:6379/2), got the path ${JSON.stringify(decodeURIComponent(path))}`,
        fix: 'Put the database number after the port, or leave the path out for database 0; the stream name goes in `stream`.',
      });
    }
  }
  for (const key of parsed.searchParams.keys()) {
    if ((OWNED_REDIS_OPTIONS as readonly string[]).includes(key) || key === 'db') {
      throw new InvalidOptionError({
        option: 'url',
        value: redactConnectionString(url),
        expected: `no ?${key}= in the URL: ${key === 'db' ? "the database goes in the URL's path (redis://host:6379/2)" : 'the sink sets it (url, confirmTimeoutMs, connectTimeoutMs, reconnectWaitMs)'}`,
        fix: `Remove ?${key}= from the URL.`,
      });
    }
  }
  return db;
}

/** The database to select: the URL's path or redisOptions.db (not both, unless they agree). */
function databaseOf(urlDb: number | undefined, given: unknown): number {
  if (given === undefined) return urlDb ?? 0;
  // ioredis parseInt()s a string: "2" works there, so it does here.
  const optionDb = typeof given === 'string' && DB_TEXT.test(given) ? Number(given) : given;
  if (typeof optionDb !== 'number' || !Number.isInteger(optionDb) || optionDb < 0 || optionDb > MAX_DB) {
    throw new InvalidOptionError({
      option: 'redisOptions.db',
      value: optionDb,
      expected: 'a database number (an integer, 0 or more)',
    });
  }
  if (urlDb !== undefined && urlDb !== optionDb) {
    throw new InvalidOptionError({
      option: 'redisOptions.db',
      value: optionDb,
      expected: `the URL's database (${urlDb}) or no redisOptions.db: the URL's path wins in ioredis`,
      fix: 'Name the database in one place.',
    });
  }
  return optionDb;
}
