/** A header name HTTP can carry: an RFC 9110 token. */
export const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * A value that arrives exactly as sent: visible ASCII with inner spaces. Anything else either cannot
 * be sent (CR, LF, NUL, characters past U+00FF) or may not arrive as sent: leading and trailing
 * whitespace is trimmed by receivers, and bytes past 0x7F are read as Latin-1 by some and UTF-8 by
 * others.
 */
const PLAIN_VALUE = /^(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?$/;

export function isPlainHeaderValue(value: string): boolean {
  return PLAIN_VALUE.test(value);
}

/** RFC 3986's unreserved characters, which percent-encoding keeps as they are. */
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
const ALL_UNRESERVED = /^[A-Za-z0-9\-._~]*$/;

/**
 * `value` as UTF-8 with every byte but the unreserved ones as `%XX`: what `decodeURIComponent`
 * reverses. Unlike `encodeURIComponent` it never throws (a lone surrogate from a row's JSON becomes
 * U+FFFD, as Buffer encodes it), since a throw here would retry the row forever.
 */
export function percentEncode(value: string): string {
  if (ALL_UNRESERVED.test(value)) return value;
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const char = String.fromCharCode(byte);
    out += byte < 0x80 && UNRESERVED.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
