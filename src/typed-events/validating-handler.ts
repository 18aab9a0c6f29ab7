import { InvalidBodyError } from '../errors.js';
import type { Handler, HandlerContext, Message } from '../subscriber/message.js';
import { type BodyCheck, bodyIssues, type BodySchemas, isPromise, runSchema, undecodableBody } from './body-schemas.js';

/**
 * The handler a subscription runs when a schema covers one of its queues: each body is validated
 * first, inside the delivery (the middleware chain, the lease, the ordering key's turn: an async
 * schema holds them like a handler would), and the handler gets the schema's output as
 * `message.body`. A body that fails is ended without running the handler: `ctx.reject()` makes
 * the decision terminal under every ack policy (DESIGN invariant 3: recorded, into the DLQ), and
 * the thrown error becomes the decision's error, so the DLQ's last_exception names it and metrics
 * and spans count it by its exception type.
 *
 * Two ways a body fails, both terminal, because neither can succeed on a later delivery and a
 * retry would only hold the row (and its ordering key) — forever in a relay, whose default retry
 * never gives up (RELAY_DEFAULTS):
 * - issues: InvalidBodyError listing them;
 * - bytes that cannot be decoded (labelled JSON, not JSON): InvalidBodyError at `(root)`, the
 *   decoder's error as its cause (a relay without a schema never decodes, and sends them).
 * A `validate` that throws or rejects instead of returning issues is a failure like the handler's
 * (the ack policy and retry decide): an async schema may do I/O that fails for a while, and ending
 * every row of an outage (deleting them, without a DLQ) would lose them. Its error is the
 * decision's error, as publish throws it; a relay retries it with its backoff, visibly.
 *
 * Subscriptions none of whose queues has a schema keep their handler as is: no cost.
 */
export function validatingHandler(handler: Handler, schemas: BodySchemas | undefined, queues: readonly string[]): Handler {
  if (schemas === undefined || !queues.some((queue) => schemas.has(queue))) return handler;
  return (message, ctx) => {
    const schema = schemas.get(message.queue);
    if (schema === undefined) return handler(message, ctx);
    let body: unknown;
    try {
      // The first read decodes the stored bytes (message.ts).
      body = message.body;
    } catch (error) {
      return refuse(ctx, 'the body cannot be decoded', undecodableBody(message, error));
    }
    // A schema that throws or rejects fails the delivery as a handler would (see above).
    const check = runSchema(
      schema,
      body,
      (issues) =>
        new InvalidBodyError({ queue: message.queue, phase: 'consume', issues: bodyIssues(issues), messageId: message.id }),
    );
    return isPromise(check)
      ? check.then((settled) => proceed(settled, handler, message, ctx))
      : proceed(check, handler, message, ctx);
  };
}

/** Ends the delivery as rejected, `error` its decision's error (the explicit reject wins over the throw). */
function refuse(ctx: HandlerContext, reason: string, error: unknown): never {
  ctx.reject(reason);
  throw error;
}

function proceed(check: BodyCheck, handler: Handler, message: Message, ctx: HandlerContext): Promise<void> | void {
  if (!check.ok) return refuse(ctx, 'the body does not match the queue schema', check.error);
  // The message's fields as they are (the body was decoded by the schema's read), with the output.
  return handler({ ...message, body: check.value }, ctx);
}
