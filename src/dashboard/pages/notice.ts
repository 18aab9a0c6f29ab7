import { type Html, html } from '../html.js';

/**
 * What an action's redirect tells the next page: a fixed word and a count in the query string
 * (`?notice=redriven&count=3`), never text the page would reflect.
 */
export type NoticeKind = 'redriven' | 'purged' | 'paused' | 'resumed' | 'unchanged';

const KINDS: readonly NoticeKind[] = ['redriven', 'purged', 'paused', 'resumed', 'unchanged'];

export function noticeQuery(kind: NoticeKind, count?: number): Record<string, string | undefined> {
  return { notice: kind, count: count === undefined ? undefined : String(count) };
}

function plural(count: number, noun: string): string {
  return `${count.toLocaleString('en-US')} ${noun}${count === 1 ? '' : 's'}`;
}

export function notice(query: URLSearchParams): Html {
  const kind = query.get('notice') as NoticeKind | null;
  if (kind === null || !KINDS.includes(kind)) return html``;
  const countText = query.get('count') ?? '';
  const count = /^\d{1,15}$/.test(countText) ? Number(countText) : 0;
  const text = {
    redriven: `Redriven ${plural(count, 'dead letter')}: back in the outbox with fresh counters.`,
    purged: `Purged ${plural(count, 'dead letter')}.`,
    paused: 'Paused: no subscriber claims this queue until it is resumed. Publishing goes on.',
    resumed: 'Resumed: subscribers claim this queue again.',
    unchanged: 'Nothing changed: the queue already was in that state.',
  }[kind];
  return html`<p class="notice" role="status" data-testid="notice">${text}</p>`;
}
