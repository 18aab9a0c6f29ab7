import type { ChannelModel, ConfirmChannel, Message, Options } from 'amqplib';

import { SinkRefusedError, SinkUnavailableError } from '../../errors.js';
import { beforeDeadline, CLOSE_TIMEOUT_MS } from '../../util/deadline.js';
import { RABBITMQ_SINK } from './rabbitmq-options.js';

/** What a broker said when it returned a message (basic.return): 312 NO_ROUTE, 313 NO_CONSUMERS. */
interface Returned {
  readonly replyCode: number;
  readonly replyText: string;
}

/** One publish waiting for its confirm; a basic.return, which comes before the ack, marks it. */
interface InFlight {
  returned: Returned | undefined;
}

/** AMQP reply code of a channel closed for a missing entity (exchange.declare passive → 404). */
const NOT_FOUND = 404;

/** Hard cap on unconfirmed publishes per connection: the relay's concurrency is far below it. */
const MAX_UNCONFIRMED = 65_536;

/**
 * One AMQP connection and its confirm channel: what the sink publishes on until either closes
 * (architecture/relay.md, "RabbitMQ sink"). It never reconnects itself: once ended it stays ended,
 * and RabbitmqConnector dials a new one.
 *
 * - Confirms: every publish carries its own callback (amqplib matches the broker's delivery tags,
 *   `multiple` acks included); a nack or a closed channel rejects it, retryable.
 * - Returns: `mandatory` makes the broker send basic.return for an unroutable message, and always
 *   before that message's ack, so a return marks the oldest in-flight publish with its messageId and
 *   the ack then resolves that send as refused. (messageId is the row's; a lease lost and re-claimed
 *   can put one row in flight twice, hence a list per id.)
 * - Flow control: a publish whose frames did not fit the write buffer returns false; later sends
 *   wait for the channel's 'drain' before writing, so the buffer never grows past one send per slot.
 * - Blocked: while the broker has raised a resource alarm (connection.blocked), sends fail at once
 *   instead of queueing frames it will not read.
 * - Exchanges: a publish to a missing exchange makes the broker close the channel, failing every
 *   send in flight with it; so a named exchange is checked (passive declare, on a channel of its
 *   own) before its first publish on this connection, and a missing one refuses only its rows.
 */
export class RabbitmqSession {
  readonly #model: ChannelModel;
  readonly #channel: ConfirmChannel;
  readonly #describe: (error: unknown) => string;
  readonly #onEnd: (session: RabbitmqSession, error: SinkUnavailableError) => void;
  readonly #inFlight = new Map<string, InFlight[]>();
  readonly #exchanges = new Map<string, Promise<void>>();
  /** Exchanges whose check succeeded on this connection: a send to one needs no wait at all. */
  readonly #knownExchanges = new Set<string>(['']);
  readonly #drainWaiters = new Set<() => void>();
  #ended: SinkUnavailableError | undefined;
  /** The connection's closing, once the session ended. */
  #closing: Promise<void> = Promise.resolve();
  /** Why the broker blocked publishing (its alarm), while it does. */
  #blocked: string | undefined;
  #writable = true;
  #unconfirmed = 0;
  /** When the broker last confirmed something, or the first publish since it had nothing to confirm. */
  #progressAt = 0;
  /** When the broker last answered on this connection: the handshake, a confirm, check()'s round trip. */
  #answeredAt = Date.now();
  /** check()'s round trip in flight, shared by the checks that come meanwhile. */
  #probe: Promise<boolean> | undefined;

  constructor(
    model: ChannelModel,
    channel: ConfirmChannel,
    describe: (error: unknown) => string,
    onEnd: (session: RabbitmqSession, error: SinkUnavailableError) => void,
  ) {
    this.#model = model;
    this.#channel = channel;
    this.#describe = describe;
    this.#onEnd = onEnd;
    // 'error' comes before 'close' and says why (a 404, CONNECTION_FORCED): the first reason wins.
    model.on('error', (error: unknown) => {
      this.#end(`the connection failed: ${describe(error)}`, error);
    });
    model.on('close', (error?: unknown) => {
      this.#end(error === undefined ? 'the connection was closed' : `the connection was closed: ${describe(error)}`, error);
    });
    model.on('blocked', (reason: unknown) => {
      this.#blocked = typeof reason === 'string' && reason !== '' ? reason : 'a resource alarm';
    });
    model.on('unblocked', () => {
      this.#blocked = undefined;
    });
    channel.on('error', (error: unknown) => {
      this.#end(`the channel was closed: ${describe(error)}`, error);
    });
    channel.on('close', () => {
      this.#end('the channel was closed');
    });
    channel.on('return', (message: Message) => {
      this.#markReturned(message);
    });
    channel.on('drain', () => {
      this.#writable = true;
      for (const wake of this.#drainWaiters) wake();
      this.#drainWaiters.clear();
    });
  }

  /** Why this session can take no publish now, or undefined when it can. */
  get unusable(): SinkUnavailableError | undefined {
    if (this.#ended !== undefined) return this.#ended;
    if (this.#blocked !== undefined)
      return new SinkUnavailableError(RABBITMQ_SINK, `the broker blocked publishing (${this.#blocked})`);
    if (this.#unconfirmed >= MAX_UNCONFIRMED)
      return new SinkUnavailableError(RABBITMQ_SINK, `${this.#unconfirmed} publishes wait for their confirm already`);
    return undefined;
  }

  get ended(): boolean {
    return this.#ended !== undefined;
  }

  /**
   * Resolves once `exchange` exists (`''`, the default exchange, always does). A missing one is
   * SinkRefusedError with the broker's words; only a found one is remembered, so an exchange
   * declared later is found by the next send.
   */
  ensureExchange(exchange: string): Promise<void> {
    if (this.#knownExchanges.has(exchange)) return Promise.resolve();
    let known = this.#exchanges.get(exchange);
    if (known === undefined) {
      known = this.#checkExchange(exchange);
      this.#exchanges.set(exchange, known);
      known.then(
        () => this.#knownExchanges.add(exchange),
        () => this.#exchanges.delete(exchange),
      );
    }
    return known;
  }

  /** Whether `exchange` is known to exist on this connection (the default exchange always is). */
  knowsExchange(exchange: string): boolean {
    return this.#knownExchanges.has(exchange);
  }

  async #checkExchange(exchange: string): Promise<void> {
    let channel;
    try {
      channel = await this.#model.createChannel();
    } catch (error) {
      throw (
        this.#ended ??
        new SinkUnavailableError(RABBITMQ_SINK, `could not open a channel: ${this.#describe(error)}`, { cause: error })
      );
    }
    // A passive declare of a missing exchange closes this channel (404): the rejection says so.
    channel.on('error', () => undefined);
    try {
      await channel.checkExchange(exchange);
    } catch (error) {
      if ((error as { code?: unknown }).code === NOT_FOUND)
        throw new SinkRefusedError(
          RABBITMQ_SINK,
          `exchange ${JSON.stringify(exchange)} does not exist: ${this.#describe(error)}`,
          {
            cause: error,
          },
        );
      // What amqplib could not encode (see #encodeFailure) can never be checked, nor published.
      if (error instanceof TypeError || error instanceof RangeError)
        throw new SinkRefusedError(
          RABBITMQ_SINK,
          `exchange ${JSON.stringify(exchange)} cannot be encoded as AMQP: ${error.message}`,
          {
            cause: error,
          },
        );
      throw (
        this.#ended ??
        new SinkUnavailableError(RABBITMQ_SINK, `could not check exchange ${JSON.stringify(exchange)}: ${this.#describe(error)}`)
      );
    } finally {
      // Every way out: a check that failed left its channel open, one per attempt, until the
      // connection ran out of channels (2,047) and every unchecked exchange failed with it.
      channel.close().catch(() => undefined);
    }
  }

  /** Whether the channel's write buffer has room: when not, a send waits for drained() before writing. */
  get writable(): boolean {
    return this.#writable;
  }

  /** Resolves when the write buffer has room again (at once when it has), or when the session ends. */
  drained(): Promise<void> {
    if (this.#writable || this.#ended !== undefined) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.add(resolve));
  }

  /**
   * Publishes and resolves once the broker confirmed. Rejects with SinkRefusedError when the broker
   * returned the message (unroutable) or it cannot be encoded (a header table over 64 KiB, a name
   * over 255 bytes), with SinkUnavailableError otherwise (a nack, the channel or connection gone).
   * Synchronous up to the write: a caller that checked `unusable` and its own abort just before
   * knows the message was written only if this was called.
   */
  publish(exchange: string, routingKey: string, payload: Buffer, options: Options.Publish): Promise<void> {
    const unusable = this.unusable;
    if (unusable !== undefined) return Promise.reject(unusable);
    const messageId = options.messageId ?? '';
    const entry: InFlight = { returned: undefined };
    let list = this.#inFlight.get(messageId);
    if (list === undefined) this.#inFlight.set(messageId, (list = []));
    list.push(entry);
    return new Promise<void>((resolve, reject) => {
      const settle = (error: unknown): void => {
        this.#forget(messageId, entry);
        this.#unconfirmed -= 1;
        this.#progressAt = Date.now();
        this.#answeredAt = this.#progressAt;
        if (error === null || error === undefined) {
          if (entry.returned === undefined) resolve();
          else reject(this.#refusal(exchange, routingKey, entry.returned));
          return;
        }
        // A nack, or the channel closing: amqplib calls back before the channel's own 'error' and
        // 'close' reach this session, so the reason is read once they have.
        setImmediate(() => {
          reject(
            this.#ended ?? new SinkUnavailableError(RABBITMQ_SINK, `the broker nacked the message: ${this.#describe(error)}`),
          );
        });
      };
      let written: boolean;
      try {
        written = this.#channel.publish(exchange, routingKey, payload, options, settle);
      } catch (error) {
        this.#forget(messageId, entry);
        reject(this.#encodeFailure(error, exchange, routingKey));
        return;
      }
      if (this.#unconfirmed === 0) this.#progressAt = Date.now();
      this.#unconfirmed += 1;
      if (!written) this.#writable = false;
    });
  }

  /**
   * A send gave up waiting for its confirm. If the broker has confirmed nothing for `stalledMs` while
   * publishes were outstanding, and has not said it is blocked, the connection is taken for dead (a
   * half-open TCP connection: heartbeats would take two intervals to tell) and dropped.
   */
  confirmOverdue(stalledMs: number): void {
    if (this.#ended !== undefined || this.#blocked !== undefined || this.#unconfirmed === 0) return;
    if (Date.now() - this.#progressAt < stalledMs) return;
    this.#end(`the broker confirmed nothing for ${stalledMs} ms with ${this.#unconfirmed} publishes outstanding`);
  }

  /**
   * Whether the broker answers on this connection. A confirm within `boundMs` answers for it; else
   * one round trip on the publish channel (basic.qos with no limit, which changes nothing on a
   * channel without consumers), bounded by `boundMs`. Without it a frozen broker or a half-open idle
   * connection would look up until heartbeats noticed (two intervals, RabbitMQ suggests 60 s). No
   * answer in time, and no alarm to explain it: the connection is taken for dead and dropped, as by
   * confirmOverdue, so the next send dials instead of spending its bound on a dead socket.
   */
  answers(boundMs: number): Promise<boolean> {
    if (this.unusable !== undefined) return Promise.resolve(false);
    if (Date.now() - this.#answeredAt < boundMs) return Promise.resolve(true);
    this.#probe ??= this.#roundTrip(boundMs).finally(() => {
      this.#probe = undefined;
    });
    return this.#probe;
  }

  async #roundTrip(boundMs: number): Promise<boolean> {
    const answered = this.#channel.prefetch(0).then(
      () => {
        this.#answeredAt = Date.now();
        return this.unusable === undefined;
      },
      // The channel closed under it: the session ended, and says why; or its close was never heard
      // (see #encodeFailure), and it ends now.
      (error: unknown) => {
        this.#end(`the channel refused a round trip: ${this.#describe(error)}`, error);
        return false;
      },
    );
    return beforeDeadline(answered, boundMs, () => {
      if (this.#blocked === undefined) this.#end(`the broker answered no round trip within ${boundMs} ms`);
      return false;
    });
  }

  /** Closes the channel and the connection, bounded: a broker that does not answer gets its socket destroyed. */
  async close(): Promise<void> {
    this.#end('the sink was closed');
    await this.#closing;
  }

  #end(reason: string, cause?: unknown): void {
    if (this.#ended !== undefined) return;
    this.#ended = new SinkUnavailableError(RABBITMQ_SINK, reason, cause === undefined ? undefined : { cause });
    for (const wake of this.#drainWaiters) wake();
    this.#drainWaiters.clear();
    this.#onEnd(this, this.#ended);
    // The channel may be gone while the connection is not (a channel-level error, a connection taken
    // for dead): the connection goes too, so the next dial starts clean.
    this.#closing = this.#shutDown();
  }

  async #shutDown(): Promise<void> {
    // Errors here are the closing's own (already closed, a dead socket): nothing to report.
    const closed = this.#model.close().catch(() => undefined);
    await beforeDeadline(closed, CLOSE_TIMEOUT_MS, () => {
      // amqplib's close() waits for the broker's close-ok, which a dead connection never sends: past
      // the bound the socket goes (an internal of amqplib's Connection, hence the guards).
      (this.#model.connection as unknown as { stream?: { destroy?: () => void } }).stream?.destroy?.();
    });
  }

  #markReturned(message: Message): void {
    const id = (message.properties.messageId as unknown) ?? '';
    const list = typeof id === 'string' ? this.#inFlight.get(id) : undefined;
    const entry = list?.find((candidate) => candidate.returned === undefined);
    if (entry === undefined) return;
    const fields = message.fields as unknown as { replyCode?: unknown; replyText?: unknown };
    entry.returned = {
      replyCode: typeof fields.replyCode === 'number' ? fields.replyCode : 0,
      replyText: typeof fields.replyText === 'string' ? fields.replyText : 'returned',
    };
  }

  #forget(messageId: string, entry: InFlight): void {
    const list = this.#inFlight.get(messageId);
    if (list === undefined) return;
    const index = list.indexOf(entry);
    if (index >= 0) list.splice(index, 1);
    if (list.length === 0) this.#inFlight.delete(messageId);
  }

  #refusal(exchange: string, routingKey: string, returned: Returned): SinkRefusedError {
    const where = exchange === '' ? 'the default exchange' : `exchange ${JSON.stringify(exchange)}`;
    return new SinkRefusedError(
      RABBITMQ_SINK,
      `${returned.replyCode} ${returned.replyText}: ${where} routes routing key ${JSON.stringify(routingKey)} to no queue`,
    );
  }

  /**
   * amqplib encodes before it writes anything: a TypeError (a short string over 255 bytes) or a
   * RangeError (a header table over its 64 KiB buffer) means this message can never be sent. Its
   * IllegalOperationError (the channel closed under us) is the only other throw, and retryable.
   */
  #encodeFailure(error: unknown, exchange: string, routingKey: string): Error {
    if (error instanceof TypeError || error instanceof RangeError) {
      return new SinkRefusedError(
        RABBITMQ_SINK,
        `the message cannot be encoded as AMQP (exchange ${JSON.stringify(exchange)}, routing key ${JSON.stringify(routingKey)}): ${error.message}`,
        { cause: error },
      );
    }
    // Anything else is a channel that cannot publish (amqplib's "Channel closed"): ended, so the
    // connector dials again. Its close may have come before this session listened (a connection
    // closed in the same socket read as the channel's open-ok), and then nothing else would end it.
    this.#end(`the channel refused the publish: ${this.#describe(error)}`, error);
    return this.#ended as SinkUnavailableError;
  }
}
