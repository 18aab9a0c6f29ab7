import type { ChannelModel, SocketOptions } from 'amqplib';

import { MissingPeerDependencyError, SinkUnavailableError } from '../../errors.js';
import { backoffMs } from '../../util/backoff.js';
import { beforeDeadline } from '../../util/deadline.js';
import { RABBITMQ_SINK, type ResolvedRabbitmqOptions } from './rabbitmq-options.js';
import { RabbitmqSession } from './rabbitmq-session.js';

/** The part of amqplib the sink uses. */
export interface AmqplibModule {
  connect(url: string, socketOptions?: SocketOptions): Promise<ChannelModel>;
}

/**
 * The confirm channel's write buffer (amqplib's `highWaterMark`, in frames of up to frameMax, 128 KiB):
 * once the socket is full, a publish past it returns false and later sends wait for 'drain'. The
 * buffer is a PassThrough, which holds up to twice its mark: 256 frames, at most 32 MiB per
 * connection, instead of amqplib's default 1024 (2048 frames, 256 MiB).
 */
const CHANNEL_BUFFER_FRAMES = 128;

/** The first pause after a failure; each further failure doubles it, up to maxReconnectDelayMs. */
const FIRST_RECONNECT_DELAY_MS = 100;

/**
 * States (architecture/relay.md, "RabbitMQ sink"):
 * - idle: no session and no reason to wait; the next session() dials at once.
 * - dialing: one dial in flight, shared by every caller that needs a session meanwhile.
 * - open: a usable session. It ending (the broker restarted, the channel closed) → waiting.
 * - waiting: the last dial failed or the session ended; no dial before `retryAt` (exponential
 *   backoff from 100 ms to maxReconnectDelayMs, reset by a session that opens), and session()
 *   fails at once meanwhile: a down broker costs retries, never a tight loop or a queue.
 * - closed: close() was called; terminal.
 */
type State =
  | { readonly kind: 'idle' }
  | { readonly kind: 'dialing'; readonly dial: Promise<RabbitmqSession> }
  | { readonly kind: 'open'; readonly session: RabbitmqSession }
  | { readonly kind: 'waiting'; readonly retryAt: number; readonly error: SinkUnavailableError }
  | { readonly kind: 'closed' };

export class RabbitmqConnector {
  readonly #options: ResolvedRabbitmqOptions;
  readonly #loadClient: () => Promise<AmqplibModule>;
  readonly #describe: (error: unknown) => string;
  #state: State = { kind: 'idle' };
  /** Failures since the last session that opened: the backoff's exponent. */
  #failures = 0;
  /** Sessions opened so far: 1 for a sink whose connection never dropped. */
  #opened = 0;

  constructor(options: ResolvedRabbitmqOptions, loadClient: () => Promise<AmqplibModule>, describe: (error: unknown) => string) {
    this.#options = options;
    this.#loadClient = loadClient;
    this.#describe = describe;
  }

  /** The open session, if there is one (check() reads it without dialing). */
  get current(): RabbitmqSession | undefined {
    return this.#state.kind === 'open' ? this.#state.session : undefined;
  }

  get opened(): number {
    return this.#opened;
  }

  /** Whether a dial now would be refused for backoff. */
  get pausing(): boolean {
    return this.#state.kind === 'waiting' && Date.now() < this.#state.retryAt;
  }

  /** A usable session: the open one, the dial in flight, or a new dial; fails at once while pausing. */
  session(): Promise<RabbitmqSession> {
    const state = this.#state;
    switch (state.kind) {
      case 'open':
        return Promise.resolve(state.session);
      case 'dialing':
        return state.dial;
      case 'waiting': {
        const wait = state.retryAt - Date.now();
        if (wait > 0)
          return Promise.reject(
            new SinkUnavailableError(RABBITMQ_SINK, `${state.error.reason}; next dial in ${Math.ceil(wait)} ms`, {
              cause: state.error,
            }),
          );
        return this.#dial();
      }
      case 'idle':
        return this.#dial();
      case 'closed':
        return Promise.reject(new SinkUnavailableError(RABBITMQ_SINK, 'the sink was closed'));
      default: {
        const never: never = state;
        throw new Error(`unknown state ${JSON.stringify(never)}`);
      }
    }
  }

  /** Closes the session (or the one a dial in flight brings) and refuses every later session(). Bounded. */
  async close(): Promise<void> {
    const state = this.#state;
    this.#state = { kind: 'closed' };
    if (state.kind === 'open') await state.session.close();
    // A dial in flight is bounded by connectTimeoutMs; what it brings is closed when it lands (#dial).
  }

  #dial(): Promise<RabbitmqSession> {
    const dial = this.#open().then(
      (session) => {
        if (this.#state.kind === 'closed') {
          void session.close();
          throw new SinkUnavailableError(RABBITMQ_SINK, 'the sink was closed');
        }
        if (session.ended) {
          // It ended between opening and now (the broker closed it at once): its end was a failure.
          throw session.unusable ?? new SinkUnavailableError(RABBITMQ_SINK, 'the connection ended as it opened');
        }
        this.#failures = 0;
        this.#opened += 1;
        this.#state = { kind: 'open', session };
        return session;
      },
      (error: unknown) => {
        if (error instanceof MissingPeerDependencyError) {
          // No dial can work without the client: the caller sees what to install, not an outage.
          if (this.#state.kind !== 'closed') this.#state = { kind: 'idle' };
          throw error;
        }
        const failure =
          error instanceof SinkUnavailableError
            ? error
            : new SinkUnavailableError(
                RABBITMQ_SINK,
                `could not connect to ${this.#options.displayUrl}: ${this.#describe(error)}`,
                {
                  cause: error,
                },
              );
        if (this.#state.kind !== 'closed') this.#pause(failure);
        throw failure;
      },
    );
    this.#state = { kind: 'dialing', dial };
    // Callers may all have given up (aborted) before the dial settles: its rejection is theirs, not unhandled.
    dial.catch(() => undefined);
    return dial;
  }

  async #open(): Promise<RabbitmqSession> {
    const amqp = await this.#loadClient();
    const { connectTimeoutMs, url } = this.#options;
    const socketOptions = this.#options.socketOptions as SocketOptions;
    const opening = (async () => {
      const model = await amqp.connect(url, {
        ...socketOptions,
        // Names the connection in the management UI and `rabbitmqctl list_connections`.
        clientProperties: { connection_name: 'txoutbox relay', ...(socketOptions.clientProperties ?? {}) },
        timeout: connectTimeoutMs,
      });
      // Until the session listens: an 'error' with no listener would be thrown by the emitter.
      model.on('error', () => undefined);
      try {
        // highWaterMark: frames the channel buffers while the socket is full before publish() says
        // "wait for drain" (amqplib's default is 1024 frames, up to 128 MiB at its frameMax).
        const channel = await model.createConfirmChannel({ highWaterMark: CHANNEL_BUFFER_FRAMES });
        const session = new RabbitmqSession(model, channel, this.#describe, (ended, error) => {
          this.#ended(ended, error);
        });
        return session;
      } catch (error) {
        model.close().catch(() => undefined);
        throw error;
      }
    })();
    return beforeDeadline(opening, connectTimeoutMs, () => {
      // The dial goes on; whatever it brings is closed when it lands.
      opening.then((session) => void session.close()).catch(() => undefined);
      throw new SinkUnavailableError(
        RABBITMQ_SINK,
        `could not connect to ${this.#options.displayUrl} within ${connectTimeoutMs} ms`,
      );
    });
  }

  #ended(session: RabbitmqSession, error: SinkUnavailableError): void {
    if (this.#state.kind === 'open' && this.#state.session === session) this.#pause(error);
  }

  #pause(error: SinkUnavailableError): void {
    this.#failures += 1;
    const delay = backoffMs(this.#failures, FIRST_RECONNECT_DELAY_MS, this.#options.maxReconnectDelayMs);
    this.#state = { kind: 'waiting', retryAt: Date.now() + delay, error };
  }
}
