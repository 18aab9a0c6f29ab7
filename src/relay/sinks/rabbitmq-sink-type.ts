import type { RelaySink } from '../sink.js';

/** A RabbitMQ sink, with the counters that show how its sends went. */
export interface RabbitmqSink extends RelaySink {
  check(): Promise<boolean>;
  /**
   * Since creation: `confirmed` sends (the broker acked them), `refused` ones (SinkRefusedError),
   * `connections` opened (more than 1: the connection dropped and was dialled again), and
   * `drainWaits`, sends that waited for the socket to drain before writing (flow control).
   */
  readonly stats: {
    readonly confirmed: number;
    readonly refused: number;
    readonly connections: number;
    readonly drainWaits: number;
  };
}
