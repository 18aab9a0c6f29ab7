import { InvalidBodyError } from '../errors.js';
import type { Handler, HandlerContext, Message } from '../subscriber/message.js';
import { type BodyCheck, bodyIssues, type BodySchemas, isPromise, runSchema } from './body-schemas.js';

/**
 * The handler a subscription runs when a schema covers one of its queues: each body is validated
 * first, inside the delivery (the middleware chain, the lease, the ordering key's turn: an async
 * schema holds them like a handler would), and the handler gets the schema's output as
 * `message.body`. A body that fails is ended without running the handler: `ctx.reject()` makes
 * the decision terminal under every ack policy (DESIGN invariant 3: recorded, into the DLQ), and
 * the thrown InvalidBodyError becomes the decision's error, so the DLQ's last_exception lists the
 * issues and metrics and spans count it by its exception type. A body that cannot be decoded at
 * all still fails as a handler failure (retried), as without schemas.
 *
 * Subscriptions none of whose queues has a schema keep their handler as is: no cost.
 */
export function validatingHandler(handler: Handler, schemas: BodySchemas | undefined, queues: readonly string[]): Handler {
  if (schemas === undefined || !queues.some((queue) => schemas.has(queue))) return handler;
  return (message, ctx) => {
    const schema = schemas.get(message.queue);
    if (schema === undefined) return handler(message, ctx);
    const check = runSchema(
      schema,
      message.body,
      (issues) =>
        new InvalidBodyError({ queue: message.queue, phase: 'consume', issues: bodyIssues(issues), messageId: message.id }),
    );
    return isPromise(check)
      ? check.then((settled) => proceed(settled, handler, message, ctx))
      : proceed(check, handler, message, ctx);
  };
}

function proceed(check: BodyCheck, handler: Handler, message: Message, ctx: HandlerContext): Promise<void> | void {
  if (!check.ok) {
    ctx.reject('the body does not match the queue schema');
    throw check.error;
  }
  // The message's fields as they are (the body was decoded by the schema's read), with the output.
  return handler({ ...message, body: check.value }, ctx);
}
