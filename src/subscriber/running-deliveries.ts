import { DeliverySignal } from './delivery-signal.js';
import type { Lease } from './lease.js';

/**
 * One running delivery: its lease, and the signal its handler may read (`ctx.signal`). One
 * object per delivery: the signal the delivery needs anyway, carrying its lease and its place in
 * the registry.
 */
export class RunningDelivery extends DeliverySignal {
  readonly lease: Lease;
  /** Its index in RunningDeliveries' array; -1 once it ended. */
  index = -1;
  /** When (performance.now()) it was timed out for outliving its lease; undefined while it has not. */
  timedOutAt: number | undefined = undefined;

  /** performance.now() when its handler's run began (handlerTimeoutMs counts from it). */
  readonly startedAt: number;

  constructor(lease: Lease, startedAt: number) {
    super();
    this.lease = lease;
    this.startedAt = startedAt;
  }
}

/**
 * A subscription's running deliveries (at most `concurrency`): an array, each delivery knowing its
 * own index, so a start is a push and an end a swap with the last and a pop. It replaces a
 * Map<Lease, DeliverySignal>, which at concurrency 1 emptied and refilled its hash table on every
 * message, and cost an entry per delivery (issue 18). The order of iteration is not the order of
 * starts: no caller needs one. Finding a lease's delivery is a walk: only lease renewal (when a
 * lease was lost) and a transactional lock's expiry do it.
 */
export class RunningDeliveries {
  readonly #all: RunningDelivery[] = [];

  get size(): number {
    return this.#all.length;
  }

  /** Registers `lease`'s delivery, starting `now`; the returned object is its signal, to end() when it is over. */
  start(lease: Lease, now: number): RunningDelivery {
    const run = new RunningDelivery(lease, now);
    run.index = this.#all.length;
    this.#all.push(run);
    return run;
  }

  /** Removes `run`; a second call for the same run does nothing. */
  end(run: RunningDelivery): void {
    const { index } = run;
    if (index < 0 || this.#all[index] !== run) return;
    const last = this.#all.pop();
    if (last !== undefined && last !== run) {
      this.#all[index] = last;
      last.index = index;
    }
    run.index = -1;
  }

  /** The running delivery of `lease`, if any. */
  find(lease: Lease): RunningDelivery | undefined {
    return this.#all.find((run) => run.lease === lease);
  }

  /** The running deliveries now (a live view: do not start or end deliveries while iterating it). */
  all(): readonly RunningDelivery[] {
    return this.#all;
  }
}
