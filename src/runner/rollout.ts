import type { Logger } from '../util/logger.js';
import type { ConsumerSlot, StartOutcome } from './consumer-slot.js';
import type { ChildSpec } from './protocol.js';

/** One consumer as the supervisor runs it: its child spec and how many processes. */
export interface ConsumerPlan {
  readonly spec: ChildSpec;
  readonly processes: number;
}

/** Same child spec (by value: a reload builds new objects): nothing to replace. */
export function sameSpec(a: ChildSpec, b: ChildSpec): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** What the rollout needs from the supervisor, which owns every slot. */
export interface RolloutContext {
  readonly logger: Logger;
  /** A new slot the supervisor tracks (stop() drains it); undefined once the supervisor is stopping. */
  newSlot(spec: ChildSpec): ConsumerSlot | undefined;
  /** Drains a slot (bounded by its deadline) and forgets it. Resolves true when it drained in time. */
  retire(slot: ConsumerSlot): Promise<boolean>;
  /** True once the supervisor began stopping: the rollout forks nothing more. */
  stopping(): boolean;
}

/** How a rollout ended. */
export const RolloutResult = {
  /** The consumer runs the new plan. */
  done: 'done',
  /** A replacement could not start: it is gone, the processes not yet replaced keep running. */
  aborted: 'aborted',
  /** The supervisor began stopping: nothing more was forked; stop() drains what exists. */
  interrupted: 'interrupted',
} as const;
export type RolloutResult = (typeof RolloutResult)[keyof typeof RolloutResult];

/** The log fields that say why a replacement did not start. */
function whyNotReady(outcome: Exclude<StartOutcome, { ready: true }>): Record<string, unknown> {
  switch (outcome.reason) {
    case 'exited':
      return {
        pid: outcome.pid,
        code: outcome.code,
        signal: outcome.signal,
        err: outcome.error ?? `exited (code ${outcome.code}, signal ${outcome.signal}) before it was ready`,
      };
    case 'not_ready_in_time':
      return { pid: outcome.pid, err: `not ready within ${outcome.timeoutMs} ms` };
    case 'not_up_in_time':
      return {
        pid: outcome.pid,
        err: `its ping() (the database, or a relay's sink: a broker it cannot reach or log in to) did not pass within ${outcome.timeoutMs} ms`,
      };
    case 'stopped':
      return { err: 'stopped before it was ready' };
    default: {
      const unknown: never = outcome;
      return unknown;
    }
  }
}

/**
 * Moves one consumer's processes (`slots`, its positions, changed in place) to `plan`, one process
 * at a time, starting each replacement before its predecessor drains: the consumer never runs fewer
 * processes than it had, and a new spec that cannot start never takes a healthy process down.
 *
 * States:
 *   replacing  position i still runs another spec: start a replacement beside it on probation.
 *              Ready with its ping() passing → drain the old process, next position. It exits
 *              before that, or is not ready, or not up (a relay's sink that cannot connect), in
 *              time → aborted (logged with the child's error and exit code; no restart: a module
 *              that fails to import would only fail again, issue 13 item 5).
 *   resizing   every kept position runs the new spec: drain the positions past `plan.processes`,
 *              start the missing ones → done.
 *   done / aborted / interrupted: terminal (RolloutResult). The supervisor starting to stop
 *              interrupts at the next step, before anything more is forked (issue 13 item 4).
 */
export async function rollOut(
  context: RolloutContext,
  consumer: string,
  slots: ConsumerSlot[],
  plan: ConsumerPlan,
): Promise<RolloutResult> {
  const kept = Math.min(slots.length, plan.processes);
  for (let index = 0; index < kept; index += 1) {
    const old = slots[index];
    if (old === undefined || sameSpec(old.spec, plan.spec)) continue;
    const replacement = context.newSlot(plan.spec);
    if (replacement === undefined) return RolloutResult.interrupted;
    const outcome = await replacement.startReplacement();
    if (context.stopping()) return RolloutResult.interrupted;
    if (!outcome.ready) {
      context.logger.error(
        { consumer, ...whyNotReady(outcome), replacedWithNewConfig: index, keptOnOldConfig: slots.length - index },
        'reload stopped for this consumer: its new process did not start; the processes not yet replaced keep running on the old config',
      );
      await context.retire(replacement);
      return RolloutResult.aborted;
    }
    slots[index] = replacement;
    context.logger.info(
      { consumer, pid: replacement.pid, oldPid: old.pid },
      'new consumer process ready; draining the one it replaces',
    );
    await context.retire(old);
    if (context.stopping()) return RolloutResult.interrupted;
  }

  const extra = slots.splice(plan.processes);
  while (slots.length < plan.processes) {
    const slot = context.newSlot(plan.spec);
    if (slot === undefined) return RolloutResult.interrupted;
    slots.push(slot);
    slot.start();
  }
  await Promise.all(extra.map((slot) => context.retire(slot)));
  return RolloutResult.done;
}
