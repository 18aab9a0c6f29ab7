import { previewOf } from '../format.js';
import { type Html, html } from '../html.js';

/** A header value longer than this is cut (headers are the publisher's, and unbounded). */
const HEADER_VALUE_BYTES = 2_048;
/** At most this many headers are listed. */
const MAX_HEADERS = 100;

export function headersTable(headers: Readonly<Record<string, string>>): Html {
  const entries = Object.entries(headers);
  if (entries.length === 0) return html`<p class="note">No headers.</p>`;
  const shown = entries.slice(0, MAX_HEADERS).map(([name, value]) => {
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    const cut = previewOf(text, HEADER_VALUE_BYTES);
    return html`<tr data-testid="header-row">
      <th><span class="name">${previewOf(name, 256).text}</span></th>
      <td class="fill"><code>${cut.text}${cut.truncated ? `… (${cut.bytes} bytes)` : ''}</code></td>
    </tr>`;
  });
  const more = entries.length > MAX_HEADERS ? html`<p class="note">… and ${entries.length - MAX_HEADERS} more headers.</p>` : '';
  return html`<table class="headers">
      <tbody>
        ${shown}
      </tbody>
    </table>
    ${more}`;
}
