import { errorMessage } from '../errors.js';
import { beforeDeadline } from '../util/deadline.js';
import type { Logger } from '../util/logger.js';
import type { RelaySink } from './sink.js';

/**
 * The sinks of an Outbox's relays: asked by ping() whether their brokers are up, and closed once
 * the relays' subscriptions have stopped. Every call is bounded and never throws: a sink that
 * hangs or fails counts as down (check) or is left behind with a warning (close).
 */
export class RelaySinks {
  readonly #sinks = new Set<RelaySink>();
  readonly #logger: Logger;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  add(sink: RelaySink): void {
    this.#sinks.add(sink);
  }

  /** True when every sink's check() says up within `ms` (a sink without check() counts as up). */
  async allUp(ms: number): Promise<boolean> {
    const checks = [...this.#sinks].map(async (sink) => {
      if (sink.check === undefined) return true;
      try {
        return await beforeDeadline(sink.check(), ms, () => false);
      } catch {
        return false;
      }
    });
    return (await Promise.all(checks)).every(Boolean);
  }

  /** Closes every sink in parallel within `ms`. */
  async closeWithin(ms: number): Promise<void> {
    await Promise.all(
      [...this.#sinks].map(async (sink) => {
        try {
          const closed = await beforeDeadline(
            sink.close().then(() => true),
            ms,
            () => false,
          );
          if (!closed) this.#logger.warn({ sink: sink.name, ms }, 'the relay sink did not close in time; leaving it');
        } catch (error) {
          this.#logger.warn({ sink: sink.name, err: errorMessage(error) }, 'the relay sink failed to close');
        }
      }),
    );
  }
}
