import type * as Nats from 'nats';

import { MissingPeerDependencyError, SinkUnavailableError } from '../../errors.js';
import { backoffMs } from '../../util/backoff.js';
import { beforeDeadline } from '../../util/deadline.js';
import { NATS_SINK, type ResolvedNatsOptions } from './nats-options.js';

export type NatsModule = typeof Nats;

/** An open connection and what sends need from it. */
export interface NatsLink {
  readonly nats: NatsModule;
  readonly nc: Nats.NatsConnection;
  readonly js: Nats.JetStreamClient;
}

/** A failed first connect waits this long at most before the next dial (doubling from reconnectWaitMs). */
const MAX_DIAL_BACKOFF_MS = 30_000;
/** close() gives the client this long to flush and close; a server that does not answer cannot hold stop(). */
const CLOSE_TIMEOUT_MS = 5_000;

const State = {
  /** No connection: the next link() dials. */
  idle: 'idle',
  /** A connect() in flight; concurrent link() calls share it. */
  dialing: 'dialing',
  /** Connected: sends go through. */
  up: 'up',
  /**
   * The client lost its server and redials by itself, reconnectWaitMs apart, forever. Sends fail at
   * once: published now, a message would only wait in the client's outbound buffer, which has no
   * bound (nats.js flushes it on reconnect), and a long outage would grow it by every retry.
   */
  reconnecting: 'reconnecting',
  /** The last dial failed: link() fails at once until retryAt, so a down server costs one dial per backoff. */
  backoff: 'backoff',
  /** close() was called: the sink is done. */
  closed: 'closed',
} as const;
type State = (typeof State)[keyof typeof State];

/**
 * The sink's one NATS connection, opened on the first send (loading the `nats` client then), and its
 * state machine (see State). A connection the client gives up on (closed by the server for good: an
 * auth error, say) is dropped and a later send dials a new one after a backoff; a lost server is the
 * client's own business (it reconnects), and the sink only refuses to queue into it meanwhile.
 */
export class NatsConnector {
  readonly #options: ResolvedNatsOptions;
  readonly #loadClient: () => Promise<NatsModule>;
  #state: State = State.idle;
  #link: NatsLink | undefined;
  #dialing: Promise<NatsLink> | undefined;
  #failures = 0;
  #retryAt = 0;
  #lastFailure = '';
  /**
   * How to fail each request now waiting for its reply (a publish's PubAck, check()'s probe): the
   * client does not fail them when the connection drops, so without this they would wait their whole
   * timeout for a reply that can no longer come (confirmTimeoutMs, 5 s by default, after a crash).
   */
  readonly #waiting = new Set<(error: Error) => void>();

  constructor(options: ResolvedNatsOptions, loadClient: () => Promise<NatsModule>) {
    this.#options = options;
    this.#loadClient = loadClient;
  }

  get state(): State {
    return this.#state;
  }

  /** The connection for a send, or SinkUnavailableError: at once unless a dial is needed (bounded by connectTimeoutMs). */
  link(): Promise<NatsLink> {
    switch (this.#state) {
      case State.up:
        return Promise.resolve(this.#link as NatsLink);
      case State.dialing:
        return this.#dialing as Promise<NatsLink>;
      case State.reconnecting:
        return Promise.reject(
          new SinkUnavailableError(
            NATS_SINK,
            `the connection to ${this.#options.displayServers} is lost; the client is reconnecting`,
          ),
        );
      case State.backoff:
        if (Date.now() < this.#retryAt) {
          return Promise.reject(
            new SinkUnavailableError(
              NATS_SINK,
              `cannot connect to ${this.#options.displayServers} (${this.#lastFailure}); next attempt in ${Math.ceil(this.#retryAt - Date.now())} ms`,
            ),
          );
        }
        return this.#dial();
      case State.idle:
        return this.#dial();
      case State.closed:
        return Promise.reject(new SinkUnavailableError(NATS_SINK, 'the sink was closed'));
      default: {
        const never: never = this.#state;
        throw new Error(`unknown state ${String(never)}`);
      }
    }
  }

  /**
   * `reply` (a request sent on the current connection), or a SinkUnavailableError as soon as that
   * connection is lost, whichever comes first. A reply that comes after that is dropped: the send
   * has failed already and the relay retries it (a duplicate PubAck then, deduplicated by
   * Nats-Msg-Id). The waiter leaves the set when either side settles, so nothing accumulates.
   */
  untilLost<T>(reply: Promise<T>): Promise<T> {
    if (this.#state !== State.up) {
      reply.catch(() => undefined);
      return Promise.reject(this.#lostError());
    }
    return new Promise<T>((resolve, reject) => {
      this.#waiting.add(reject);
      reply
        .finally(() => {
          this.#waiting.delete(reject);
        })
        .then(resolve, reject);
    });
  }

  #failWaiting(): void {
    if (this.#waiting.size === 0) return;
    const error = this.#lostError();
    const waiting = [...this.#waiting];
    this.#waiting.clear();
    for (const reject of waiting) reject(error);
  }

  #lostError(): SinkUnavailableError {
    return this.#state === State.closed
      ? new SinkUnavailableError(NATS_SINK, 'the sink was closed')
      : new SinkUnavailableError(
          NATS_SINK,
          `the connection to ${this.#options.displayServers} was lost before the reply came; the client is reconnecting`,
        );
  }

  async close(): Promise<void> {
    const dialing = this.#dialing;
    this.#state = State.closed;
    this.#failWaiting();
    // A dial in flight finishes (bounded by connectTimeoutMs) and is closed by #dial itself.
    if (dialing !== undefined) await dialing.catch(() => undefined);
    const link = this.#link;
    this.#link = undefined;
    if (link !== undefined) await beforeDeadline(link.nc.close(), CLOSE_TIMEOUT_MS, () => undefined);
  }

  #dial(): Promise<NatsLink> {
    this.#state = State.dialing;
    const dialing = this.#open().then(
      (link) => {
        this.#dialing = undefined;
        if (this.#state === State.closed) {
          void link.nc.close().catch(() => undefined);
          throw new SinkUnavailableError(NATS_SINK, 'the sink was closed');
        }
        this.#failures = 0;
        this.#link = link;
        this.#state = State.up;
        this.#watch(link);
        return link;
      },
      (error: unknown) => {
        this.#dialing = undefined;
        // A missing client says what to install, and stays missing: no backoff, the same error each time.
        if (error instanceof MissingPeerDependencyError) {
          if (this.#state !== State.closed) this.#state = State.idle;
          throw error;
        }
        if (this.#state !== State.closed) {
          this.#failures += 1;
          this.#lastFailure = describe(error);
          this.#retryAt = Date.now() + backoffMs(this.#failures, this.#options.reconnectWaitMs, MAX_DIAL_BACKOFF_MS);
          this.#state = State.backoff;
        }
        if (error instanceof SinkUnavailableError) throw error;
        throw new SinkUnavailableError(NATS_SINK, `cannot connect to ${this.#options.displayServers} (${describe(error)})`, {
          cause: error,
        });
      },
    );
    this.#dialing = dialing;
    return dialing;
  }

  async #open(): Promise<NatsLink> {
    const nats = await this.#loadClient();
    const nc = await nats.connect({
      // Each request would capture an Error for its stack trace in case it fails: 1.5x the sends per
      // second without (9.6k vs 6.6k msg/s at 64 in flight, file store, 2 busy cores). The sink
      // classifies every failure itself; connectOptions may turn the traces back on.
      noAsyncTraces: true,
      // Authentication, TLS, name... next: the settings below are the sink's contract.
      ...this.#options.connectOptions,
      servers: [...this.#options.servers],
      timeout: this.#options.connectTimeoutMs,
      reconnect: true,
      // Never give up on a lost server: a relay outlives broker restarts. A send meanwhile fails
      // at once (State.reconnecting), so the unbounded redial costs one attempt per reconnectWaitMs.
      maxReconnectAttempts: -1,
      reconnectTimeWait: this.#options.reconnectWaitMs,
      waitOnFirstConnect: false,
    });
    return { nats, nc, js: nc.jetstream({ timeout: this.#options.confirmTimeoutMs }) };
  }

  /** Follows the client's status: lost → reconnecting, back → up, closed for good → idle (a later send dials anew). */
  #watch(link: NatsLink): void {
    void (async () => {
      for await (const status of link.nc.status()) {
        if (this.#link !== link) return;
        // 'reconnecting' too: a reconnect attempt may be reported without a fresh 'disconnect'.
        if (status.type === link.nats.Events.Disconnect || status.type === link.nats.DebugEvents.Reconnecting) {
          this.#state = State.reconnecting;
          this.#failWaiting();
        } else if (status.type === link.nats.Events.Reconnect) this.#state = State.up;
      }
    })().catch(() => undefined);
    void link.nc.closed().then((error) => {
      if (this.#link !== link || this.#state === State.closed) return;
      this.#link = undefined;
      this.#failures += 1;
      this.#lastFailure = error instanceof Error ? `the connection closed: ${describe(error)}` : 'the connection closed';
      this.#retryAt = Date.now() + backoffMs(this.#failures, this.#options.reconnectWaitMs, MAX_DIAL_BACKOFF_MS);
      this.#state = State.backoff;
      this.#failWaiting();
    });
  }
}

/** An error's own words (the nats client's codes, such as CONNECTION_REFUSED, name no credentials). */
export function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' && code !== error.message ? `${error.message} (${code})` : error.message;
  }
  return String(error);
}
