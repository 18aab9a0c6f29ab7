/**
 * What every publish does before its INSERT, shared by the real producer (publish.ts) and
 * txoutbox/testing's in-memory one: validate the bodies by the queue's schema (typed-events), encode
 * them into the envelope, and fail a publish that cannot go on through the publish middlewares.
 */
import { buildHeaders } from '../envelope/build-headers.js';
import { encodeBody } from '../envelope/encode-body.js';
import type { MiddlewareChain } from '../instrumentation/middleware-chain.js';
import type { Emit } from '../instrumentation/recorders.js';
import {
  type BodyCheck,
  type BodySchemas,
  checkPublishedBodies,
  checkPublishedBody,
  isPromise,
} from '../typed-events/body-schemas.js';
import { observePublish, type PublishScope } from './observe-publish.js';
import type { ResolvedPublishOptions } from './publish-options.js';

export interface PublishObservers {
  readonly middlewares: MiddlewareChain;
  readonly emit: Emit;
  /** The Outbox's `schemas`; undefined when it has none (then no body is validated, at no cost). */
  readonly schemas: BodySchemas | undefined;
}

/** One body as the row stores it. */
export interface EncodedBody {
  readonly payload: Buffer;
  readonly headers: Record<string, string>;
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/**
 * A publish that failed before its INSERT (an unencodable or invalid body, a schema that threw)
 * still runs through the publish middlewares, with an insert that rejects: their error counts and
 * spans include it, and the `published` error event is emitted once, by observePublish. Always
 * rejects with the error.
 */
async function failBeforeInsert(ctx: PublishObservers, scope: Omit<PublishScope, 'sizeBytes'>, error: unknown): Promise<never> {
  const failure = asError(error);
  await observePublish(ctx.middlewares, ctx.emit, { ...scope, sizeBytes: 0 }, () => Promise.reject(failure));
  throw failure; // not reached: observePublish rethrows what the insert rejected with
}

function encode(body: unknown, resolved: ResolvedPublishOptions): EncodedBody {
  const { payload, contentType } = encodeBody(body);
  return { payload, headers: buildHeaders({ headers: resolved.headers, contentType, correlationId: resolved.correlationId }) };
}

/** publish()'s body, validated (when the queue has a schema) and encoded; before any statement. */
export async function prepareBody(
  ctx: PublishObservers,
  queue: string,
  body: unknown,
  resolved: ResolvedPublishOptions,
): Promise<EncodedBody> {
  const scope = { queue, messageCount: 1, batch: false, correlationId: resolved.correlationId };
  let value = body;
  const schema = ctx.schemas?.get(queue);
  if (schema !== undefined) {
    let check: BodyCheck;
    try {
      // Synchronous schemas are not awaited: no extra turn on the publish path.
      const pending = checkPublishedBody(schema, queue, body);
      check = isPromise(pending) ? await pending : pending;
    } catch (error) {
      return await failBeforeInsert(ctx, scope, error);
    }
    if (!check.ok) return await failBeforeInsert(ctx, scope, check.error);
    value = check.value;
  }
  try {
    return encode(value, resolved);
  } catch (error) {
    return await failBeforeInsert(ctx, scope, error);
  }
}

/** publishBatch()'s bodies, all validated before any is encoded, then encoded; before any statement. */
export async function prepareBatch(
  ctx: PublishObservers,
  queue: string,
  bodies: readonly unknown[],
  resolved: ResolvedPublishOptions,
): Promise<{ messages: EncodedBody[]; sizeBytes: number }> {
  const scope = { queue, messageCount: bodies.length, batch: true, correlationId: resolved.correlationId };
  let values = bodies;
  const schema = ctx.schemas?.get(queue);
  if (schema !== undefined) {
    const check = await checkPublishedBodies(schema, queue, bodies).catch((error: unknown) => asError(error));
    if (check instanceof Error) return await failBeforeInsert(ctx, scope, check);
    if (!check.ok) return await failBeforeInsert(ctx, scope, check.error);
    values = check.value as unknown[];
  }
  const messages: EncodedBody[] = [];
  let sizeBytes = 0;
  try {
    for (const value of values) {
      const message = encode(value, resolved);
      messages.push(message);
      sizeBytes += message.payload.length;
    }
  } catch (error) {
    return await failBeforeInsert(ctx, scope, error);
  }
  return { messages, sizeBytes };
}
