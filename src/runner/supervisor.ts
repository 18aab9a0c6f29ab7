import { beforeDeadline } from '../util/deadline.js';
import type { Logger } from '../util/logger.js';
import { ConsumerSlot, type RestartPolicy } from './consumer-slot.js';
import type { MetricsLedger } from './metrics/metrics-ledger.js';
import type { ChildSpec } from './protocol.js';

/** One consumer as the supervisor runs it: its child spec and how many processes. */
export interface ConsumerPlan {
  readonly spec: ChildSpec;
  readonly processes: number;
}

export interface SupervisorDeps {
  readonly policy: RestartPolicy;
  readonly ledger: MetricsLedger;
  readonly logger: Logger;
  readonly onRestart: (consumer: string) => void;
}

/** Same child spec: nothing to restart on reload. */
function sameSpec(a: ChildSpec, b: ChildSpec): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Runs `processes` children per consumer and keeps them running (each slot restarts its own with
 * backoff). `reload()` applies a new plan: new consumers start, removed ones drain, and a consumer
 * whose spec changed is replaced one process at a time (the next starts once the previous new one
 * is ready), so it keeps consuming throughout; a changed process count adds or drains slots.
 */
export class Supervisor {
  readonly #deps: SupervisorDeps;
  readonly #slots = new Map<string, ConsumerSlot[]>();
  readonly #plans = new Map<string, ConsumerPlan>();

  constructor(deps: SupervisorDeps) {
    this.#deps = deps;
  }

  /** Consumers and their live process counts, for the processes gauge and readiness. */
  processCounts(): Map<string, { alive: number; ready: number; wanted: number }> {
    const counts = new Map<string, { alive: number; ready: number; wanted: number }>();
    for (const [consumer, slots] of this.#slots) {
      counts.set(consumer, {
        alive: slots.filter((s) => s.alive).length,
        ready: slots.filter((s) => s.ready).length,
        wanted: this.#plans.get(consumer)?.processes ?? 0,
      });
    }
    return counts;
  }

  /** Pids of every live child, by consumer (tests kill them; logs name them). */
  pids(consumer: string): number[] {
    return (this.#slots.get(consumer) ?? []).flatMap((slot) => (slot.pid === undefined ? [] : [slot.pid]));
  }

  start(plans: ReadonlyMap<string, ConsumerPlan>): void {
    for (const [consumer, plan] of plans) this.#startConsumer(consumer, plan);
  }

  #newSlot(spec: ChildSpec): ConsumerSlot {
    return new ConsumerSlot(spec, this.#deps);
  }

  #startConsumer(consumer: string, plan: ConsumerPlan): void {
    const slots = Array.from({ length: plan.processes }, () => this.#newSlot(plan.spec));
    this.#slots.set(consumer, slots);
    this.#plans.set(consumer, plan);
    for (const slot of slots) slot.start();
  }

  async reload(plans: ReadonlyMap<string, ConsumerPlan>): Promise<void> {
    const work: Promise<void>[] = [];
    for (const [consumer, slots] of this.#slots) {
      if (plans.has(consumer)) continue;
      this.#deps.logger.info({ consumer }, 'consumer removed from the config; draining it');
      this.#slots.delete(consumer);
      this.#plans.delete(consumer);
      work.push(Promise.all(slots.map((slot) => slot.stop())).then(() => undefined));
    }
    for (const [consumer, plan] of plans) {
      const old = this.#plans.get(consumer);
      if (old === undefined) {
        this.#deps.logger.info({ consumer, processes: plan.processes }, 'consumer added by the config; starting it');
        this.#startConsumer(consumer, plan);
        continue;
      }
      work.push(this.#reshape(consumer, old, plan));
    }
    await Promise.all(work);
  }

  async #reshape(consumer: string, old: ConsumerPlan, plan: ConsumerPlan): Promise<void> {
    const slots = this.#slots.get(consumer) ?? [];
    this.#plans.set(consumer, plan);
    const changed = !sameSpec(old.spec, plan.spec);
    if (!changed && old.processes === plan.processes) return;
    this.#deps.logger.info(
      { consumer, processes: `${old.processes} → ${plan.processes}`, specChanged: changed },
      'applying the new config to a consumer',
    );
    const extra = slots.splice(plan.processes);
    while (slots.length < plan.processes) {
      const slot = this.#newSlot(plan.spec);
      slots.push(slot);
      slot.start();
    }
    await Promise.all(extra.map((slot) => slot.stop()));
    if (!changed) return;
    // One process at a time: the consumer never has fewer than processes − 1 running.
    for (let index = 0; index < slots.length; index += 1) {
      const previous = slots[index];
      if (previous === undefined || previous.spec === plan.spec) continue;
      await previous.stop();
      const replacement = this.#newSlot(plan.spec);
      slots[index] = replacement;
      replacement.start();
      await replacement.whenReadyOrExited();
    }
  }

  /**
   * Drains every child (SIGTERM; each waits for its handlers up to its graceful timeout), and
   * SIGKILLs what is left after `deadlineMs`. Resolves true when every child drained in time.
   */
  async stop(deadlineMs: number): Promise<boolean> {
    const slots = [...this.#slots.values()].flat();
    this.#slots.clear();
    const drained = await beforeDeadline(
      Promise.all(slots.map((slot) => slot.stop())).then(() => true),
      deadlineMs,
      () => false,
    );
    if (!drained) {
      this.#deps.logger.error(
        { deadlineMs },
        'consumers did not drain before the deadline; killing them (their rows are redelivered after the lease)',
      );
      for (const slot of slots) slot.kill();
      await Promise.all(slots.map((slot) => slot.stop()));
    }
    return drained;
  }
}
