/**
 * Why PostgreSQL cannot store `text` as given, or undefined when it can. A NUL is refused by text
 * and jsonb alike ("invalid byte sequence", "unsupported Unicode escape sequence"), inside the
 * caller's transaction, which it aborts with an untyped error; an unpaired UTF-16 surrogate is not
 * Unicode, and is stored as U+FFFD, so two different timer ids or keys would become one.
 */
export function unstorableIn(text: string): string | undefined {
  if (text.includes('\u0000')) return 'a NUL character (\\u0000), which PostgreSQL text cannot store';
  return unpairedSurrogateIn(text);
}

/** Why `text` is not Unicode (an unpaired surrogate, which UTF-8 encoding turns into U+FFFD), or undefined. */
export function unpairedSurrogateIn(text: string): string | undefined {
  return isWellFormed(text) ? undefined : 'an unpaired UTF-16 surrogate, which is not Unicode (it would be stored as U+FFFD)';
}

/** String.prototype.isWellFormed (Node 20+, V8's own scan: a one-byte string is checked at once), else the regex. */
const nativeWellFormed = (String.prototype as { isWellFormed?: (this: string) => boolean }).isWellFormed;
const isWellFormed = (text: string): boolean =>
  nativeWellFormed === undefined ? !UNPAIRED_SURROGATE.test(text) : nativeWellFormed.call(text);

const UNPAIRED_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
