import { performance } from 'node:perf_hooks';

import { errorMessage } from '../errors.js';
import type { CustomStatKeys } from '../instrumentation/custom-stats.js';
import type { OutboxEvent } from '../instrumentation/events.js';
import type { ConsumeContext, ConsumeOutcome, ConsumeResult } from '../instrumentation/middleware.js';
import type { MiddlewareChain } from '../instrumentation/middleware-chain.js';
import type { RetryStrategy } from '../retry/retry-strategy.js';
import { MAX_DELAY_MS } from '../retry/retry-strategy.js';
import type { Logger } from '../util/logger.js';
import { type Decision, DecisionRecorder } from './decision.js';
import { correlationIdOf, type Handler, toMessage } from './message.js';
import type { Lease, OutcomeWriter, Run } from './outcome-writer.js';
import type { ResolvedSubscribeOptions } from './subscription-options.js';

export interface DeliverDeps {
  readonly options: ResolvedSubscribeOptions;
  readonly handler: Handler;
  readonly writer: OutcomeWriter;
  readonly logger: Logger;
  readonly emit: (event: OutboxEvent) => void;
  readonly middlewares: MiddlewareChain;
  readonly customStats: CustomStatKeys;
}

/** Asks the strategy for a delay; a throwing or nonsensical strategy ends the row instead of the loop. */
function retryDelay(strategy: RetryStrategy, lease: Lease, run: Run, error: unknown, logger: Logger): number | null {
  try {
    const delay = strategy.nextDelayMs({
      attempt: lease.record.attempts_count + 1,
      firstAttemptAt: lease.record.first_attempt_at ?? run.startedAt,
      lastAttemptAt: run.startedAt,
      error,
    });
    if (delay === null) return null;
    if (typeof delay !== 'number' || !Number.isFinite(delay) || delay < 0) {
      logger.error(
        { messageId: lease.record.id, delay: String(delay) },
        'retry strategy returned an invalid delay; ending the row as retry_terminal',
      );
      return null;
    }
    return Math.min(delay, MAX_DELAY_MS);
  } catch (strategyError) {
    logger.error(
      { messageId: lease.record.id, err: errorMessage(strategyError) },
      'retry strategy threw; ending the row as retry_terminal',
    );
    return null;
  }
}

/** What a decision means for the row: ack, retry after a delay, or end it. */
function plan(decision: Decision, lease: Lease, run: Run, deps: DeliverDeps): ConsumeOutcome {
  switch (decision.kind) {
    case 'ack':
      return { kind: 'ack' };
    case 'reject':
      return { kind: 'terminal', reason: 'rejected' };
    case 'nack': {
      const delayMs = decision.delayMs ?? retryDelay(deps.options.retry, lease, run, decision.error, deps.logger);
      if (delayMs === null) return { kind: 'terminal', reason: 'retry_terminal' };
      return { kind: 'retry', delayMs: Math.min(Math.max(0, delayMs), MAX_DELAY_MS) };
    }
    default: {
      const unreachable: never = decision;
      throw new Error(`unknown decision ${JSON.stringify(unreachable)}`);
    }
  }
}

const STATUS_OF: Record<Decision['kind'], ConsumeResult['status']> = { ack: 'acked', nack: 'nacked', reject: 'rejected' };

/**
 * One delivery: the max-deliveries gate, then the middleware chain around the handler (decode,
 * run under the ack policy, decide), then the outcome write (awaited for retries and terminal
 * moves; an ack is handed to the coalescing acker).
 * Never throws: every failure path either records a terminal decision or leaves the row leased.
 * `abandoned()` turns true when shutdown stopped waiting: the outcome is then not written (the pool
 * may be gone), and the row is redelivered after its lease expires.
 */
export async function deliver(lease: Lease, signal: AbortSignal, abandoned: () => boolean, deps: DeliverDeps): Promise<void> {
  const { options, writer, logger, emit } = deps;
  const { record } = lease;
  const scope = { queue: record.queue, subscriber: options.name, messageId: record.id, deliveriesCount: record.deliveries_count };

  if (options.maxDeliveries !== undefined && record.deliveries_count > options.maxDeliveries) {
    logger.error(
      { ...scope, maxDeliveries: options.maxDeliveries },
      'row exceeded maxDeliveries; ending it without running the handler',
    );
    await writer.terminal(
      lease,
      'max_deliveries',
      new Error(`delivered ${record.deliveries_count} times (maxDeliveries ${options.maxDeliveries})`),
      undefined,
    );
    return;
  }

  emit({
    type: 'dispatched',
    ...scope,
    sizeBytes: record.payload.length,
    ageSeconds: Math.max(0, (Date.now() - record.created_at.getTime()) / 1000),
  });
  const ctx: ConsumeContext = {
    subscriber: options.name,
    queue: record.queue,
    messageId: record.id,
    correlationId: correlationIdOf(record),
    headers: record.headers,
    sizeBytes: record.payload.length,
    deliveriesCount: record.deliveries_count,
    createdAt: record.created_at,
    traceId: undefined,
  };
  let run: Run | undefined;

  const runHandler = async (): Promise<ConsumeResult> => {
    const startedAt = new Date();
    const t0 = performance.now();
    const decisions = new DecisionRecorder(options.ackPolicy, (call) => {
      logger.warn(scope, `ctx.${call} called after the handler settled; ignored`);
    });
    const controls = decisions.controls(signal, options.name, deps.customStats.forDelivery(options.name, record.queue));
    let outcome: { threw: false } | { threw: true; error: unknown };
    try {
      // Decoding inside the chain: a malformed body fails like a throwing handler, inside the span.
      await deps.handler(toMessage(record), controls);
      outcome = { threw: false };
    } catch (error) {
      outcome = { threw: true, error };
    }
    const { decision, forgotten } = decisions.settle(outcome);
    run = { startedAt, durationSeconds: (performance.now() - t0) / 1000 };
    if (forgotten)
      logger.error(
        scope,
        'manual handler returned without ctx.ack(), nack() or reject(); treating it as nack (retry), never as a silent delete',
      );
    // A handler that threw after deciding (`ctx.ack()` then a throw) keeps its decision, but the
    // result still reports the error it threw: metrics and spans must not say `error` without one.
    const decided =
      decision.kind === 'ack'
        ? undefined
        : (decision.error ??
          (decision.kind === 'reject' && decision.reason !== undefined ? new Error(`rejected: ${decision.reason}`) : undefined));
    const error = decided ?? (outcome.threw ? outcome.error : undefined);
    return {
      status: outcome.threw ? 'error' : STATUS_OF[decision.kind],
      error,
      durationSeconds: run.durationSeconds,
      outcome: plan(decision, lease, run, deps),
    };
  };

  // A middleware failed around a handler that did not: fail the delivery as if the handler threw.
  const fail = (error: unknown, handlerResult: ConsumeResult | undefined): ConsumeResult => {
    run ??= { startedAt: new Date(), durationSeconds: 0 };
    const decision: Decision =
      options.ackPolicy === 'reject_on_error'
        ? { kind: 'reject', reason: undefined, error }
        : { kind: 'nack', delayMs: undefined, error };
    return {
      status: 'error',
      error,
      durationSeconds: handlerResult?.durationSeconds ?? 0,
      outcome: plan(decision, lease, run, deps),
    };
  };

  const result = await deps.middlewares.consume(ctx, runHandler, fail);
  run ??= { startedAt: new Date(), durationSeconds: result.durationSeconds };
  if (abandoned()) {
    logger.warn(scope, 'handler finished after shutdown stopped waiting; its row keeps its lease and will be redelivered');
    return;
  }

  const { outcome } = result;
  switch (outcome.kind) {
    case 'ack':
      // Not awaited: the slot takes the next row while the acker batches this delete with the
      // others of this turn (one DELETE per turn instead of one per message; stop() drains the
      // acker). The lease stays held until the DELETE lands, so a crash meanwhile redelivers.
      void writer.ack(lease, run);
      return;
    case 'terminal':
      await writer.terminal(lease, outcome.reason, result.error, run);
      return;
    case 'retry':
      await writer.retry(lease, run, outcome.delayMs, result.error);
      return;
    default: {
      const unreachable: never = outcome;
      throw new Error(`unknown outcome ${JSON.stringify(unreachable)}`);
    }
  }
}
