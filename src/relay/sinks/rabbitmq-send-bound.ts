import { SinkUnavailableError } from '../../errors.js';
import { RABBITMQ_SINK } from './rabbitmq-options.js';

/** What a send is waiting for: named in the timeout's message. */
export type SendPhase = 'a connection' | 'the exchange check' | 'the socket to drain' | 'the confirm';

/**
 * The bound of one send: `timeoutMs` for all its waits together, and the relay's abort signal.
 * Whichever comes first fails the wait in progress (and every later one), with the signal's reason
 * or a SinkUnavailableError naming the phase. The awaited work itself goes on — a publish cannot be
 * unsent — and its late result is dropped; what matters is that nothing is written after the send
 * gave up, which `throwIfOver()` right before the write ensures.
 */
export class SendBound {
  readonly #signal: AbortSignal;
  readonly #timer: NodeJS.Timeout;
  readonly #over: Promise<never>;
  #fail: (error: Error) => void = () => undefined;
  #failure: Error | undefined;
  #phase: SendPhase = 'a connection';

  constructor(signal: AbortSignal, timeoutMs: number, onTimeout: (phase: SendPhase) => void) {
    this.#signal = signal;
    this.#over = new Promise<never>((_, reject) => {
      this.#fail = (error) => {
        if (this.#failure !== undefined) return;
        this.#failure = error;
        reject(error);
      };
    });
    this.#over.catch(() => undefined);
    this.#timer = setTimeout(() => {
      this.#fail(new SinkUnavailableError(RABBITMQ_SINK, `no answer within ${timeoutMs} ms (waiting for ${this.#phase})`));
      onTimeout(this.#phase);
    }, timeoutMs);
    signal.addEventListener('abort', this.#onAbort, { once: true });
    if (signal.aborted) this.#onAbort();
  }

  /** `work`'s result, unless the send gives up first. */
  wait<T>(phase: SendPhase, work: Promise<T>): Promise<T> {
    this.#phase = phase;
    // Lost races still settle: their rejection is dropped here, never unhandled.
    work.catch(() => undefined);
    return Promise.race([work, this.#over]);
  }

  /** Throws if the send gave up: called synchronously right before the write. */
  throwIfOver(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  /** Releases the timer and the signal listener. */
  end(): void {
    clearTimeout(this.#timer);
    this.#signal.removeEventListener('abort', this.#onAbort);
  }

  readonly #onAbort = (): void => {
    const reason: unknown = this.#signal.reason;
    // The relay aborts with an Error; anything else is wrapped, so callers always see an Error.
    this.#fail(reason instanceof Error ? reason : new Error(`aborted: ${String(reason)}`, { cause: reason }));
  };
}
