import { performance } from 'node:perf_hooks';

import { exceptionTypeOf } from '../instrumentation/events.js';
import type { PublishContext, PublishResult } from '../instrumentation/middleware.js';
import type { MiddlewareChain } from '../instrumentation/middleware-chain.js';
import type { Emit } from '../instrumentation/recorders.js';

/** What one publish call hands to the instrumentation around it. */
export interface PublishScope {
  readonly queue: string;
  readonly messageCount: number;
  readonly batch: boolean;
  readonly sizeBytes: number;
  readonly correlationId: string | undefined;
}

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/**
 * Runs one publish call's INSERT inside the publish middlewares and reports a `published` event
 * with what the database did (rows inserted; status error and the exception type when it threw).
 * `insert` receives the headers the middlewares added, to write into every row.
 */
export async function observePublish(
  chain: MiddlewareChain,
  emit: Emit,
  scope: PublishScope,
  insert: (injectedHeaders: Readonly<Record<string, string>>) => Promise<PublishResult>,
): Promise<PublishResult> {
  // Nothing observes: no context, no clock, no event (the W1 hot path).
  if (emit === undefined && !chain.hasPublish) return await insert(NO_HEADERS);
  const t0 = performance.now();
  const ctx: PublishContext = { ...scope, headers: {}, traceId: undefined };
  try {
    const result = await chain.publish(ctx, () => insert(ctx.headers));
    emit?.({
      type: 'published',
      queue: scope.queue,
      status: 'ok',
      count: result.inserted,
      messageCount: scope.messageCount,
      sizeBytes: scope.sizeBytes,
      durationSeconds: (performance.now() - t0) / 1000,
    });
    return result;
  } catch (error) {
    emit?.({
      type: 'published',
      queue: scope.queue,
      status: 'error',
      count: 0,
      messageCount: scope.messageCount,
      sizeBytes: 0,
      durationSeconds: (performance.now() - t0) / 1000,
      exceptionType: exceptionTypeOf(error),
    });
    throw error;
  }
}
