import { type Html, html } from '../html.js';

/**
 * What an action's redirect tells the next page: a fixed word and a count in the query string
 * (`?notice=redriven&count=3`), never text the page would reflect.
 */
export type NoticeKind = 'redriven' | 'purged' | 'paused' | 'resumed' | 'unchanged';

const KINDS: readonly NoticeKind[] = ['redriven', 'purged', 'paused', 'resumed', 'unchanged'];

/** `left`: rows the action had to leave (a redrive's keyBusy, a purge's remaining); omitted when none. */
export function noticeQuery(kind: NoticeKind, count?: number, left = 0): Record<string, string | undefined> {
  return { notice: kind, count: count === undefined ? undefined : String(count), left: left > 0 ? String(left) : undefined };
}

/** A count from the query string: digits only, else 0. */
function countOf(query: URLSearchParams, name: string): number {
  const text = query.get(name) ?? '';
  return /^\d{1,15}$/.test(text) ? Number(text) : 0;
}

function plural(count: number, noun: string): string {
  return `${count.toLocaleString('en-US')} ${noun}${count === 1 ? '' : 's'}`;
}

export function notice(query: URLSearchParams): Html {
  const kind = query.get('notice') as NoticeKind | null;
  if (kind === null || !KINDS.includes(kind)) return html``;
  const count = countOf(query, 'count');
  const left = countOf(query, 'left');
  // A partial redrive or purge says so: rows a transaction held throughout are still in the DLQ
  // (the CLI prints the same and exits 1).
  const stayed = left === 0 ? '' : ` ${plural(left, 'dead letter')} stayed here: `;
  const text = {
    redriven: `Redriven ${plural(count, 'dead letter')}: back in the outbox with fresh counters.${
      left === 0
        ? ''
        : `${stayed}a transaction held ${left === 1 ? 'its' : 'their'} ordering key throughout. Redrive again once it has ended.`
    }`,
    purged: `Purged ${plural(count, 'dead letter')}.${
      left === 0 ? '' : `${stayed}another redrive or purge was moving ${left === 1 ? 'it' : 'them'} throughout. Purge again.`
    }`,
    paused: 'Paused: no subscriber claims this queue until it is resumed. Publishing goes on.',
    resumed: 'Resumed: subscribers claim this queue again.',
    unchanged: 'Nothing changed: the queue already was in that state.',
  }[kind];
  return html`<p class="notice" role="status" data-testid="notice">${text}</p>`;
}
