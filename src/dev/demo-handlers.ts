/**
 * The handlers `txoutbox dev` runs: a little simulated work per message, a custom stat, and a rare
 * transient failure so retries show up in the metrics. Exported by name, as a config refers to them.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import type { HandlerContext, Message } from '../subscriber/message.js';

/** About one delivery in fifty fails and is retried: the demo's error ratio is never zero. */
const FAILURE_RATE = 0.02;

async function work(ctx: HandlerContext, stat: string): Promise<void> {
  await ctx.stats.time(`${stat}_work`, () => sleep(1 + Math.random() * 4));
  if (Math.random() < FAILURE_RATE) throw new Error('simulated transient failure');
  ctx.stats.incr(stat);
}

export async function sendConfirmationEmail(_message: Message, ctx: HandlerContext): Promise<void> {
  await work(ctx, 'emails_sent');
}

export async function reserveStock(_message: Message, ctx: HandlerContext): Promise<void> {
  await work(ctx, 'stock_reserved');
}
