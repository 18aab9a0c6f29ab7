import { ConsumerSlot, type SlotDeps } from './consumer-slot.js';
import type { ChildSpec } from './protocol.js';
import { type ConsumerPlan, rollOut, RolloutResult, sameSpec } from './rollout.js';

export type { ConsumerPlan } from './rollout.js';

/** What every slot gets: restart policy, the metrics ledger, the logger. */
export type SupervisorDeps = SlotDeps;

/** How a reload ended: applied, or which consumers kept their old processes, or cut short by stop(). */
export interface ReloadOutcome {
  readonly interrupted: boolean;
  /** Consumers whose new processes could not start: they keep running their previous config. */
  readonly failed: readonly string[];
}

/**
 * Runs `processes` children per consumer and keeps them running (each slot restarts its own with
 * backoff). `reload()` applies a new plan: new consumers start, removed ones drain, and a consumer
 * whose spec or process count changed is rolled out one process at a time (rollout.ts).
 *
 * States:
 *   running    every consumer's slots are kept per its plan       reload() → reloading; stop() → stopping
 *   reloading  a reload is applying a new plan                    done → running; stop() → stopping
 *   stopping   every process drains; nothing is forked any more   all gone → stopped
 *   stopped    terminal
 * Reloads run one at a time, in order. Every slot that may have a process — serving, a
 * replacement on probation, or draining — is in `#all`, so stop() drains all of them, whatever
 * step a reload was at; a reload interrupted by stop() forks nothing more (issue 13 item 4).
 */
export class Supervisor {
  readonly #deps: SupervisorDeps;
  #state: 'running' | 'reloading' | 'stopping' | 'stopped' = 'running';
  /** The plan each consumer runs (a rollout that did not finish keeps the previous one). */
  readonly #plans = new Map<string, ConsumerPlan>();
  /** Each consumer's serving positions. */
  readonly #slots = new Map<string, ConsumerSlot[]>();
  /** Every slot that may have a process, serving or not. */
  readonly #all = new Set<ConsumerSlot>();
  #reloads: Promise<unknown> = Promise.resolve();
  #stopped: Promise<boolean> | undefined;

  constructor(deps: SupervisorDeps) {
    this.#deps = deps;
  }

  /**
   * Consumers (configured, or draining after removal) and their process counts: `alive` counts
   * every process (starting, running, draining, or a reload's replacement), `ready` those running.
   */
  processCounts(): Map<string, { alive: number; ready: number; wanted: number }> {
    const counts = new Map<string, { alive: number; ready: number; wanted: number }>();
    for (const [consumer, plan] of this.#plans) counts.set(consumer, { alive: 0, ready: 0, wanted: plan.processes });
    for (const slot of this.#all) {
      const entry = counts.get(slot.consumer) ?? { alive: 0, ready: 0, wanted: 0 };
      counts.set(slot.consumer, {
        alive: entry.alive + (slot.alive ? 1 : 0),
        ready: entry.ready + (slot.ready ? 1 : 0),
        wanted: entry.wanted,
      });
    }
    return counts;
  }

  /** Pids of every live child of a consumer (logs name them; tests kill them). */
  pids(consumer: string): number[] {
    return [...this.#all].flatMap((slot) => (slot.consumer === consumer && slot.pid !== undefined ? [slot.pid] : []));
  }

  start(plans: ReadonlyMap<string, ConsumerPlan>): void {
    for (const [consumer, plan] of plans) this.#startConsumer(consumer, plan);
  }

  /** Applies a new plan after any reload still in progress. Never rejects. */
  reload(plans: ReadonlyMap<string, ConsumerPlan>): Promise<ReloadOutcome> {
    const applied = this.#reloads.then(() => this.#apply(plans));
    this.#reloads = applied.catch(() => undefined);
    return applied;
  }

  /**
   * Drains every process (SIGTERM; each waits for its handlers up to its graceful timeout, and is
   * SIGKILLed KILL_MARGIN_MS after it). Resolves true when every process drained in time. Idempotent.
   */
  stop(): Promise<boolean> {
    this.#stopped ??= this.#stopAll();
    return this.#stopped;
  }

  /** SIGKILLs every process now (a second stop signal) and resolves when they are gone: false. */
  kill(): Promise<boolean> {
    const stopped = this.stop();
    this.#deps.logger.warn(
      { processes: this.#all.size },
      'killing every consumer process now (their rows are redelivered after the lease)',
    );
    for (const slot of this.#all) void slot.kill();
    return stopped;
  }

  async #stopAll(): Promise<boolean> {
    this.#state = 'stopping';
    const drained = await Promise.all([...this.#all].map((slot) => this.#retire(slot)));
    this.#state = 'stopped';
    return drained.every(Boolean);
  }

  async #apply(plans: ReadonlyMap<string, ConsumerPlan>): Promise<ReloadOutcome> {
    if (this.#state !== 'running') return { interrupted: true, failed: [] };
    this.#state = 'reloading';
    try {
      const work: Promise<RolloutResult>[] = [];
      const consumers: string[] = [];
      for (const [consumer, slots] of this.#slots) {
        if (plans.has(consumer)) continue;
        this.#deps.logger.info({ consumer }, 'consumer removed from the config; draining it');
        this.#slots.delete(consumer);
        this.#plans.delete(consumer);
        work.push(Promise.all(slots.map((slot) => this.#retire(slot))).then(() => RolloutResult.done));
        consumers.push(consumer);
      }
      for (const [consumer, plan] of plans) {
        if (!this.#plans.has(consumer)) {
          this.#deps.logger.info({ consumer, processes: plan.processes }, 'consumer added by the config; starting it');
          this.#startConsumer(consumer, plan);
          continue;
        }
        work.push(this.#reshape(consumer, plan));
        consumers.push(consumer);
      }
      const results = await Promise.all(work);
      return {
        interrupted: results.includes(RolloutResult.interrupted),
        failed: consumers.filter((_, index) => results[index] === RolloutResult.aborted),
      };
    } finally {
      if (!this.#isStopping()) this.#state = 'running';
    }
  }

  async #reshape(consumer: string, plan: ConsumerPlan): Promise<RolloutResult> {
    const slots = this.#slots.get(consumer) ?? [];
    const specChanged = slots.some((slot) => !sameSpec(slot.spec, plan.spec));
    if (!specChanged && slots.length === plan.processes) {
      this.#plans.set(consumer, plan);
      return RolloutResult.done;
    }
    this.#deps.logger.info(
      { consumer, processes: `${slots.length} → ${plan.processes}`, specChanged },
      'applying the new config to a consumer',
    );
    const result = await rollOut(
      {
        logger: this.#deps.logger,
        newSlot: (spec) => this.#newSlot(spec),
        retire: (slot) => this.#retire(slot),
        stopping: () => this.#isStopping(),
      },
      consumer,
      slots,
      plan,
    );
    if (result === RolloutResult.done) this.#plans.set(consumer, plan);
    return result;
  }

  #startConsumer(consumer: string, plan: ConsumerPlan): void {
    const slots: ConsumerSlot[] = [];
    for (let index = 0; index < plan.processes; index += 1) {
      const slot = this.#newSlot(plan.spec);
      if (slot === undefined) return;
      slots.push(slot);
    }
    this.#slots.set(consumer, slots);
    this.#plans.set(consumer, plan);
    for (const slot of slots) slot.start();
  }

  #isStopping(): boolean {
    return this.#state === 'stopping' || this.#state === 'stopped';
  }

  /** A slot tracked in #all; none once stopping began (nothing may be forked after that). */
  #newSlot(spec: ChildSpec): ConsumerSlot | undefined {
    if (this.#isStopping()) return undefined;
    const slot = new ConsumerSlot(spec, this.#deps);
    this.#all.add(slot);
    return slot;
  }

  /** Drains a slot (bounded: see ConsumerSlot.stop) and forgets it. */
  async #retire(slot: ConsumerSlot): Promise<boolean> {
    const drained = await slot.stop();
    this.#all.delete(slot);
    return drained;
  }
}
