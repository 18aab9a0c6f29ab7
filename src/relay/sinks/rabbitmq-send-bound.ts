import { SinkUnavailableError } from '../../errors.js';
import { abortable } from './abortable.js';
import { RABBITMQ_SINK } from './rabbitmq-options.js';

/** What a send is waiting for: named in the timeout's message. */
export type SendPhase = 'a connection' | 'the exchange check' | 'the socket to drain' | 'the confirm';

/**
 * The bound of one send: `timeoutMs` for all its waits together, and the relay's abort signal.
 * Whichever comes first fails the wait in progress (and every later one), with the signal's reason
 * or a SinkUnavailableError naming the phase. The awaited work itself goes on — a publish cannot be
 * unsent — and its late result is dropped; what matters is that nothing is written after the send
 * gave up, which `throwIfOver()` right before the write ensures. The signal is watched through
 * abortable(): one listener per signal, however many sends share it.
 */
export class SendBound {
  readonly #signal: AbortSignal;
  readonly #timer: NodeJS.Timeout;
  readonly #timedOut: Promise<never>;
  #timeout: SinkUnavailableError | undefined;
  #phase: SendPhase = 'a connection';

  constructor(signal: AbortSignal, timeoutMs: number, onTimeout: (phase: SendPhase) => void) {
    this.#signal = signal;
    let fail: (error: Error) => void = () => undefined;
    this.#timedOut = new Promise<never>((_, reject) => {
      fail = reject;
    });
    // Lost races still settle: never an unhandled rejection.
    this.#timedOut.catch(() => undefined);
    this.#timer = setTimeout(() => {
      this.#timeout = new SinkUnavailableError(RABBITMQ_SINK, `no answer within ${timeoutMs} ms (waiting for ${this.#phase})`);
      fail(this.#timeout);
      onTimeout(this.#phase);
    }, timeoutMs);
  }

  /** `work`'s result, unless the send gives up first. */
  wait<T>(phase: SendPhase, work: Promise<T>): Promise<T> {
    this.#phase = phase;
    work.catch(() => undefined);
    return abortable(Promise.race([work, this.#timedOut]), this.#signal);
  }

  /** Throws if the send gave up (timed out, or the signal aborted): called synchronously right before the write. */
  throwIfOver(): void {
    if (this.#timeout !== undefined) throw this.#timeout;
    this.#signal.throwIfAborted();
  }

  /** Releases the timer. */
  end(): void {
    clearTimeout(this.#timer);
  }
}
