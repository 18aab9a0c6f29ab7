import { InvalidOptionError } from '../../errors.js';
import { integerOption } from '../../util/integer-option.js';
import { rejectUnknownOptions } from '../../util/known-options.js';
import { redactConnectionString } from '../../util/redact.js';
import { compileDestination, type Destination, type DestinationOf, templateFilledWith } from '../template.js';

/** Options of `natsSink()` (architecture/relay.md, "NATS JetStream sink"). */
export interface NatsSinkOptions {
  /**
   * The NATS server(s): `nats://127.0.0.1:4222`, `host:port`, or a list the client fails over
   * between. No credentials here: nats.js ignores a URL's user info (`nats://user:pass@host` fails
   * authentication), so the sink rejects it; pass them as `connectOptions.user`/`pass` or `token`.
   */
  readonly servers: string | readonly string[];
  /**
   * The subject of each row: fixed (`orders.created`), a template (`orders.{queue}`,
   * `{headers.type}`) or a function of the message. A JetStream stream must capture it.
   * @default '{queue}'
   */
  readonly subject?: Destination;
  /**
   * The stream that must store the messages, sent as `Nats-Expected-Stream`: a subject that another
   * stream captures is refused (DLQ) instead of landing in the wrong place. @default none (any stream)
   */
  readonly stream?: string;
  /**
   * How long a send waits for its JetStream ack (PubAck) before it fails, to be retried. With a file
   * store the ack waits for the write, not for an fsync. @default 5000
   */
  readonly confirmTimeoutMs?: number;
  /** How long one connect attempt may take (TCP, TLS, the INFO/CONNECT handshake). @default 5000 */
  readonly connectTimeoutMs?: number;
  /**
   * Pause between reconnect attempts once connected (the client's `reconnectTimeWait`), and the
   * first pause after a failed first connect (then doubled up to 30 s). @default 1000
   */
  readonly reconnectWaitMs?: number;
  /**
   * Further options for the client's `connect()`: authentication (`user`/`pass`, `token`,
   * `authenticator`), `tls`, `name`, `inboxPrefix`, `pingInterval`... The sink owns `servers`, the
   * reconnect settings and the connect timeout (the options above).
   */
  readonly connectOptions?: Readonly<Record<string, unknown>>;
}

export interface ResolvedNatsOptions {
  readonly servers: readonly string[];
  /** The servers as shown in messages: passwords and tokens masked. */
  readonly displayServers: string;
  readonly subjectOf: DestinationOf;
  /**
   * Whether a subject may start with `$` (NATS's system and JetStream API subjects: `$JS.API.…`,
   * `$KV.…`): only when the option itself starts with one, or is a function. A template that
   * starts with a placeholder must not let a row's value send `$JS.API.STREAM.PURGE.<stream>`.
   */
  readonly systemSubjects: boolean;
  readonly stream: string | undefined;
  readonly confirmTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly reconnectWaitMs: number;
  readonly connectOptions: Readonly<Record<string, unknown>>;
}

export const NATS_SINK = 'nats';

const KNOWN = [
  'servers',
  'subject',
  'stream',
  'confirmTimeoutMs',
  'connectTimeoutMs',
  'reconnectWaitMs',
  'connectOptions',
] as const;

/** connect() options the sink sets itself: a caller's value would break the reconnect contract. */
const OWNED_CONNECT_OPTIONS = [
  'servers',
  'port',
  'reconnect',
  'maxReconnectAttempts',
  'reconnectTimeWait',
  'reconnectDelayHandler',
  'timeout',
  'waitOnFirstConnect',
] as const;

// A stream name may not contain whitespace, '.', '*', '>', path separators (nats-server's rule).
const STREAM_NAME = /^[^\s.*>/\\]+$/;

export function resolveNatsOptions(raw: NatsSinkOptions): ResolvedNatsOptions {
  // JavaScript callers and config files can pass anything: the types are no guarantee here.
  if (typeof (raw as unknown) !== 'object' || (raw as unknown) === null) {
    throw new InvalidOptionError({
      option: 'natsSink options',
      value: raw,
      expected: 'an object such as { servers: "nats://127.0.0.1:4222" }',
    });
  }
  rejectUnknownOptions(raw, 'natsSink()', KNOWN);
  const servers = typeof raw.servers === 'string' ? [raw.servers] : raw.servers;
  if (!Array.isArray(servers) || servers.length === 0 || servers.some((s) => typeof s !== 'string' || s.trim() === '')) {
    throw new InvalidOptionError({
      option: 'servers',
      value: raw.servers,
      expected: 'a NATS server URL such as "nats://127.0.0.1:4222", or a non-empty list of them',
      fix: 'Pass servers.',
      redact: true,
    });
  }
  if (servers.some(hasUserInfo)) {
    throw new InvalidOptionError({
      option: 'servers',
      value: raw.servers,
      expected: "server URLs without credentials: the nats client ignores a URL's user info, so authentication would fail",
      fix: 'Remove "user:pass@" from the URL; pass connectOptions: { user, pass } or { token } instead.',
      redact: true,
    });
  }
  if (raw.stream !== undefined && (typeof raw.stream !== 'string' || !STREAM_NAME.test(raw.stream))) {
    throw new InvalidOptionError({
      option: 'stream',
      value: raw.stream,
      expected: "a JetStream stream name (no whitespace, '.', '*', '>', '/' or '\\')",
      fix: 'Pass the name of the stream that captures the subject, or leave stream out to accept any stream.',
    });
  }
  const connectOptions = (raw.connectOptions ?? {}) as unknown as Record<string, unknown>;
  if (typeof (connectOptions as unknown) !== 'object' || (connectOptions as unknown) === null || Array.isArray(connectOptions)) {
    throw new InvalidOptionError({
      option: 'connectOptions',
      value: connectOptions,
      expected: 'an object of nats connect() options (user, pass, token, authenticator, tls, name, ...)',
      redact: true,
    });
  }
  for (const key of OWNED_CONNECT_OPTIONS) {
    if (Object.hasOwn(connectOptions, key)) {
      throw new InvalidOptionError({
        option: `connectOptions.${key}`,
        value: connectOptions[key],
        expected: `no ${key}: the sink sets it (servers, confirmTimeoutMs, connectTimeoutMs, reconnectWaitMs)`,
        fix: `Remove connectOptions.${key}; use the sink's own option.`,
        redact: true,
      });
    }
  }
  const subjectOf = compileDestination(NATS_SINK, 'subject', raw.subject ?? '{queue}');
  if (typeof raw.subject === 'string') refuseUnpublishableTemplate(raw.subject);
  return {
    servers,
    displayServers: servers.map(displayServer).join(', '),
    subjectOf,
    systemSubjects: typeof raw.subject === 'function' || (typeof raw.subject === 'string' && raw.subject.startsWith('$')),
    stream: raw.stream,
    confirmTimeoutMs: integerOption('confirmTimeoutMs', raw.confirmTimeoutMs, 1, 600_000, 5_000),
    connectTimeoutMs: integerOption('connectTimeoutMs', raw.connectTimeoutMs, 1, 600_000, 5_000),
    reconnectWaitMs: integerOption('reconnectWaitMs', raw.reconnectWaitMs, 1, 600_000, 1_000),
    connectOptions,
  };
}

/**
 * Whether NATS can publish to `subject`: whitespace splits its protocol line, and an empty token
 * (`a..b`, a trailing dot) or a `*` / `>` token (a wildcard) is no subject a message can go to.
 */
export function isPublishableSubject(subject: string): boolean {
  return !/\s/.test(subject) && !subject.split('.').some((token) => token === '' || token === '*' || token === '>');
}

/**
 * A subject template whose own text breaks those rules fails every row it would route (each one
 * refused into the DLQ, or deleted with `dlqTable: false`): refused when the sink is created. Each
 * placeholder is filled with a plain token, so only what the template itself writes is judged.
 */
function refuseUnpublishableTemplate(subject: string): void {
  if (isPublishableSubject(templateFilledWith('subject', subject, 'x'))) return;
  throw new InvalidOptionError({
    option: 'subject',
    value: subject,
    expected: "a NATS subject to publish to: dot-separated tokens, no whitespace, no empty tokens, no '*' or '>' tokens",
    fix: "Name the subject each row goes to (orders.created, orders.{queue}); wildcards belong in a stream's subjects, not in a publish.",
  });
}

/** `nats://user:pass@host`, `token@host:4222`: an '@' in the authority (before any path). */
function hasUserInfo(server: string): boolean {
  const afterScheme = server.includes('://') ? server.slice(server.indexOf('://') + 3) : server;
  return /^[^/?#]*@/.test(afterScheme);
}

/** A server as shown in errors: `host:port` forms get a scheme first, so `user:pass@host` is masked too. */
function displayServer(server: string): string {
  return redactConnectionString(server.includes('://') ? server : `nats://${server}`);
}
