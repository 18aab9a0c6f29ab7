/**
 * What every publish does before its INSERT, shared by the real producer (publish.ts) and
 * txoutbox/testing's in-memory one: validate the bodies by the queue's schema (typed-events), encode
 * them into the envelope, and fail a publish that cannot go on through the publish middlewares.
 */
import { randomUUID } from 'node:crypto';

import { buildHeaders, rowContentType, sharedCorrelationId } from '../envelope/build-headers.js';
import { type BodyContent, bodyContent, encodeBody } from '../envelope/encode-body.js';
import { MAX_PAYLOAD_BYTES, PayloadBuffer, payloadTooLarge } from '../envelope/payload-buffer.js';
import { UnencodableBodyError } from '../errors.js';
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

/**
 * A batch's bodies as publishBatch's statement takes them (src/producer/sql.ts, BATCH_ROWS): every
 * payload in one buffer, in publish order, and per row its length, content type and correlation
 * id. The headers JSON is written later (batchHeaderLines), once a middleware's injected headers
 * are known.
 */
export interface EncodedBatch {
  /** Every payload, concatenated in publish order. */
  readonly payloads: Buffer;
  /** Each row's payload length in bytes: row i starts where rows 0..i-1 end. */
  readonly lengths: readonly number[];
  readonly contentTypes: readonly string[];
  readonly correlationIds: readonly string[];
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
  if (payload.length > MAX_PAYLOAD_BYTES) throw payloadTooLarge('body', payload.length, MAX_PAYLOAD_BYTES);
  return { payload, headers: buildHeaders({ headers: resolved.headers, contentType, correlationId: resolved.correlationId }) };
}

/**
 * The bodies straight into one PayloadBuffer (no Buffer per body), with buildHeaders' checks per
 * row (content type) or once per batch (correlation id). Throws what encodeBody and buildHeaders
 * throw, and payloadTooLarge('bodies') past `limit`.
 */
export function encodeBatch(
  values: readonly unknown[],
  resolved: ResolvedPublishOptions,
  limit = MAX_PAYLOAD_BYTES,
): EncodedBatch {
  const contents: BodyContent[] = [];
  let at = 0;
  try {
    for (; at < values.length; at += 1) contents.push(bodyContent(values[at]));
  } catch (error) {
    throw namingBody(at, error);
  }
  const shared = sharedCorrelationId(resolved.headers, resolved.correlationId);
  let guess = 0;
  for (const { content } of contents) guess += content.length;
  const buffer = new PayloadBuffer(guess, limit);
  const lengths: number[] = [];
  const contentTypes: string[] = [];
  const correlationIds: string[] = [];
  for (const { content, contentType } of contents) {
    lengths.push(typeof content === 'string' ? buffer.writeText(content) : buffer.writeBytes(content));
    contentTypes.push(rowContentType(resolved.headers, contentType, contentTypes.length));
    correlationIds.push(shared ?? randomUUID());
  }
  return { payloads: buffer.finish(), lengths, contentTypes, correlationIds };
}

/**
 * bodies[i]'s encoding error, naming the body: in a batch of 10,000, "Cannot encode the body: it is
 * undefined" did not say which.
 */
function namingBody(i: number, error: unknown): unknown {
  return error instanceof UnencodableBodyError ? new UnencodableBodyError(`bodies[${i}]: ${error.message}`, error.cause) : error;
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
  limit = MAX_PAYLOAD_BYTES,
): Promise<EncodedBatch> {
  const scope = { queue, messageCount: bodies.length, batch: true, correlationId: resolved.correlationId };
  let values = bodies;
  const schema = ctx.schemas?.get(queue);
  if (schema !== undefined) {
    const check = await checkPublishedBodies(schema, queue, bodies).catch((error: unknown) => asError(error));
    if (check instanceof Error) return await failBeforeInsert(ctx, scope, check);
    if (!check.ok) return await failBeforeInsert(ctx, scope, check.error);
    values = check.value as unknown[];
  }
  try {
    return encodeBatch(values, resolved, limit);
  } catch (error) {
    return await failBeforeInsert(ctx, scope, error);
  }
}
