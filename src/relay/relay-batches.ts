import { performance } from 'node:perf_hooks';

import type { RelayOutcome } from '../instrumentation/events.js';
import type { Emit } from '../instrumentation/recorders.js';

/** The sends of one queue started in one event-loop turn, until each has settled. */
class Batch {
  readonly #done: (batch: Batch) => void;
  readonly queue: string;
  readonly startedAt = performance.now();
  #open = true;
  #pending = 0;
  messages = 0;
  readonly counts: Record<RelayOutcome, number> = { confirmed: 0, refused: 0, failed: 0 };
  settledAt = 0;

  constructor(queue: string, done: (batch: Batch) => void) {
    this.queue = queue;
    this.#done = done;
  }

  add(): void {
    this.messages += 1;
    this.#pending += 1;
  }

  settle(outcome: RelayOutcome, now: number): void {
    this.counts[outcome] += 1;
    this.#pending -= 1;
    this.settledAt = now;
    if (this.#pending === 0 && !this.#open) this.#done(this);
  }

  close(): void {
    this.#open = false;
    if (this.#pending === 0) this.#done(this);
  }
}

/**
 * Groups a relay's sends into batches for the `relay_batch` event: the sends of a queue started in
 * one event-loop turn (the subscription starts a claim's rows in one go) form a batch, reported
 * once the last of them settled. Only built when a recorder listens.
 */
export class RelayBatches {
  readonly #sink: string;
  readonly #subscriber: string;
  readonly #emit: NonNullable<Emit>;
  #turn: Map<string, Batch> | undefined;

  constructor(sink: string, subscriber: string, emit: NonNullable<Emit>) {
    this.#sink = sink;
    this.#subscriber = subscriber;
    this.#emit = emit;
  }

  /** The batch this send belongs to; settle it with the send's outcome. */
  join(queue: string): Batch {
    if (this.#turn === undefined) {
      const turn = new Map<string, Batch>();
      this.#turn = turn;
      setImmediate(() => {
        this.#turn = undefined;
        for (const batch of turn.values()) batch.close();
      });
    }
    let batch = this.#turn.get(queue);
    if (batch === undefined) {
      batch = new Batch(queue, (done) => {
        this.#report(done);
      });
      this.#turn.set(queue, batch);
    }
    batch.add();
    return batch;
  }

  #report(batch: Batch): void {
    this.#emit({
      type: 'relay_batch',
      queue: batch.queue,
      subscriber: this.#subscriber,
      sink: this.#sink,
      messages: batch.messages,
      ...batch.counts,
      durationSeconds: Math.max(0, batch.settledAt - batch.startedAt) / 1000,
    });
  }
}
