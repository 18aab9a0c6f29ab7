/**
 * The one renderer of the CLI's human tables (dlq list, status, queue peek): a header row and
 * columns separated by two spaces, each as wide as its widest cell. Numbers align right so their
 * digits line up; text aligns left. Pure: the commands' tests check it without a terminal.
 */

import { terminalSafe } from '../util/terminal-safe.js';

export interface Column {
  readonly header: string;
  /** @default 'left' */
  readonly align?: 'left' | 'right';
}

export function renderTable(columns: readonly Column[], rows: readonly (readonly string[])[]): string {
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map((r) => oneLine(r[i]).length)));
  const line = (cells: readonly string[]): string =>
    `${columns
      .map((c, i) => {
        const cell = oneLine(cells[i]);
        const width = widths[i] ?? 0;
        return c.align === 'right' ? cell.padStart(width) : cell.padEnd(width);
      })
      .join('  ')
      .trimEnd()}\n`;
  return `${line(columns.map((c) => c.header))}${rows.map(line).join('')}`;
}

/**
 * A cell never breaks the table: line breaks and tabs (a body preview's) become a space; every other
 * control character a visible escape (terminal-safe.ts), so a hostile value cannot drive the terminal.
 */
function oneLine(cell: string | undefined): string {
  return terminalSafe((cell ?? '').replace(/[\r\n\t]+/g, ' '));
}

/** `12,000`: digits grouped the same way on every machine, whatever its locale. */
export function groupDigits(n: number): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: 1 });
}

/** `3m 12s`, `2h 5m`, `4d 1h`: the two largest units, for an age in milliseconds. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 60) return `${seconds}s`;
  const units: [string, number][] = [
    ['d', 86_400],
    ['h', 3_600],
    ['m', 60],
    ['s', 1],
  ];
  const first = units.findIndex(([, size]) => seconds >= size);
  const [bigName, bigSize] = units[first] ?? ['s', 1];
  const [smallName, smallSize] = units[first + 1] ?? ['s', 1];
  const big = Math.floor(seconds / bigSize);
  const small = Math.floor((seconds - big * bigSize) / smallSize);
  return small === 0 ? `${big}${bigName}` : `${big}${bigName} ${small}${smallName}`;
}
