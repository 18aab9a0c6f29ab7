import type { ThroughputMinute } from '../../queues/queue-status.js';
import { type Html, html } from '../html.js';

const WIDTH = 4;
const GAP = 1;
const HEIGHT = 24;

/**
 * A queue's minutes as a bar row drawn on the server: handled rows up from the baseline, dead-lettered
 * ones in red on top. SVG presentation attributes only (no style attribute: the CSP forbids inline
 * styles); the numbers are in each bar's <title> and in the aria-label, so it reads without the picture.
 */
export function sparkline(minutes: readonly ThroughputMinute[]): Html {
  const peak = Math.max(1, ...minutes.map((m) => m.handled + m.deadLettered));
  const width = Math.max(1, minutes.length * (WIDTH + GAP));
  const bars = minutes.map((m, i) => {
    const x = i * (WIDTH + GAP);
    const handled = Math.round((m.handled / peak) * HEIGHT);
    const failed = Math.round((m.deadLettered / peak) * HEIGHT);
    const label = `${m.minute.toISOString().slice(11, 16)}Z: ${m.handled} handled, ${m.retried} retried, ${m.deadLettered} dead-lettered`;
    // A quiet minute draws nothing (the aria-label still lists it): 15 empty bars would double a row's size.
    if (m.handled + m.retried + m.deadLettered === 0) return html``;
    const handledBar =
      handled === 0
        ? ''
        : html`<rect class="handled" x="${x}" y="${HEIGHT - handled}" width="${WIDTH}" height="${handled}"></rect>`;
    const failedBar =
      failed === 0
        ? ''
        : html`<rect class="failed" x="${x}" y="${HEIGHT - handled - failed}" width="${WIDTH}" height="${failed}"></rect>`;
    return html`<g><title>${label}</title>${handledBar}${failedBar}</g>`;
  });
  const summary = `handled per minute, oldest first: ${minutes.map((m) => m.handled).join(', ')}`;
  return html`<svg
    class="spark"
    xmlns="http://www.w3.org/2000/svg"
    width="${width}"
    height="${HEIGHT}"
    viewBox="0 0 ${width} ${HEIGHT}"
    role="img"
    aria-label="${summary}"
  >
    <line x1="0" y1="${HEIGHT - 0.5}" x2="${width}" y2="${HEIGHT - 0.5}"></line>
    ${bars}
  </svg>`;
}
