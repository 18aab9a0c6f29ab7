// The application code the two example test files test: a publish inside the caller's
// transaction, and a handler that decides ack / nack with a delay / reject and publishes a
// follow-up. It is written against the real types only: the same code runs on `new Outbox(…)`.
import type { Handler, Outbox, TransactionTarget } from 'txoutbox';

export interface Order {
  readonly orderId: number;
  readonly email: string;
  readonly total: number;
}

/** Publishes in the caller's transaction: with the order's own INSERT in production. */
export async function placeOrder(outbox: Pick<Outbox, 'publish'>, tx: TransactionTarget, order: Order): Promise<void> {
  await outbox.publish(tx, 'order.created', order, { orderingKey: `customer:${order.email}` });
}

export class RateLimitedError extends Error {
  readonly retryAfterMs: number;

  constructor(retryAfterMs: number) {
    super(`rate limited for ${retryAfterMs} ms`);
    this.retryAfterMs = retryAfterMs;
  }
}

export interface Mailer {
  send(to: string, subject: string): Promise<void>;
}

/** Sends the confirmation e-mail, then asks for an invoice (a follow-up caused by this message). */
export function sendConfirmation(mailer: Mailer): Handler<Order> {
  return async function sendConfirmation(message, ctx) {
    const { email, orderId, total } = message.body;
    if (!email.includes('@')) {
      ctx.reject(`invalid e-mail address for order ${orderId}`);
      return;
    }
    try {
      await mailer.send(email, `Order ${orderId} confirmed`);
    } catch (error) {
      if (error instanceof RateLimitedError) {
        ctx.nack({ delayMs: error.retryAfterMs });
        return;
      }
      throw error; // retried by the subscription's strategy
    }
    await ctx.publish('invoice.requested', { orderId, total });
  };
}
