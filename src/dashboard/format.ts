/** How the pages show values: short, bounded, the same on every page. */

/** `2024-05-01 12:34:56Z`: seconds are what an operator compares; UTC, as the database stores it. */
export function formatTime(date: Date | null): string {
  if (date === null) return '—';
  return `${date.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/** `0 s`, `42 s`, `3 min 5 s`, `2 h 4 min`, `3 d 2 h`: two units at most. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const min = Math.floor(s / 60);
  if (min < 60) return `${min} min ${s % 60} s`;
  const h = Math.floor(min / 60);
  if (h < 24) return `${h} h ${min % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** 1234567 → `1,234,567`; `~` in front of a planner estimate. */
export function formatCount(n: number | undefined, estimated = false): string {
  if (n === undefined) return '—';
  return `${estimated ? '~' : ''}${n.toLocaleString('en-US')}`;
}

export function formatRate(perMinute: number): string {
  return perMinute >= 10 ? perMinute.toFixed(0) : perMinute.toFixed(1);
}

export interface Preview {
  readonly text: string;
  /** True when `text` is a prefix of a longer value. */
  readonly truncated: boolean;
  /** The whole value's size in UTF-8 bytes. */
  readonly bytes: number;
}

/**
 * The first `maxBytes` UTF-8 bytes of a value shown as text, never half a character: a 1 MB body
 * must not become a 1 MB page. A string as is, bytes as UTF-8, anything else as indented JSON.
 */
export function previewOf(value: unknown, maxBytes: number): Preview {
  const text =
    typeof value === 'string'
      ? value
      : Buffer.isBuffer(value)
        ? value.toString('utf8')
        : // JSON.stringify(undefined) is undefined, whatever its declared type says.
          ((JSON.stringify(value, null, 2) as string | undefined) ?? '');
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes <= maxBytes) return { text, truncated: false, bytes };
  const encoded = Buffer.from(text, 'utf8');
  let end = maxBytes;
  // Back up over continuation bytes (10xxxxxx) to the start of the character that does not fit.
  while (end > 0 && ((encoded[end] ?? 0) & 0xc0) === 0x80) end -= 1;
  return { text: encoded.subarray(0, end).toString('utf8'), truncated: true, bytes };
}

/** `12 B`, `3.4 KiB`, `1.0 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
