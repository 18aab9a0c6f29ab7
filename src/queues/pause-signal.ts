/**
 * What travels on the Outbox's NOTIFY channel. A payload is a queue name (a publish, a redrive, a
 * resume: wake its subscribers) or, from pause(), the queue behind PAUSED_PREFIX: subscribers
 * give back that queue's buffered rows. The prefix starts with a control character no sensible
 * queue name has; a queue named so anyway would only have its rows released, never lost.
 */
const PAUSED_PREFIX = '\u0001paused\u0001';

export type ChannelSignal =
  { readonly kind: 'wake'; readonly queue: string } | { readonly kind: 'paused'; readonly queue: string };

/** The payload pause() notifies. */
export function pausedPayload(queue: string): string {
  return `${PAUSED_PREFIX}${queue}`;
}

export function readSignal(payload: string): ChannelSignal {
  return payload.startsWith(PAUSED_PREFIX)
    ? { kind: 'paused', queue: payload.slice(PAUSED_PREFIX.length) }
    : { kind: 'wake', queue: payload };
}
