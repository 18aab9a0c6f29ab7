import type { ConfigIssue } from '../../errors.js';
import { maskSecrets, passwordsIn } from '../../util/redact.js';

/** Passwords written in `texts` (the file as written, and as interpolated: a `${VAR}` may carry one). */
export function secretsIn(texts: readonly string[]): string[] {
  const secrets = new Set<string>();
  for (const text of texts) {
    for (const secret of passwordsIn(text)) {
      secrets.add(secret);
      try {
        secrets.add(decodeURIComponent(secret));
      } catch {
        // not percent-encoded
      }
    }
  }
  // Very short ones would mangle every message they happen to occur in; the messages that could
  // show a URL already redact it structurally, this is the second line of defence.
  return [...secrets].filter((secret) => secret.length >= 4).sort((a, b) => b.length - a.length);
}

/**
 * `text` with `secret` replaced by `***`, and with what is left of it where a quoted value was cut
 * short (renderValue's `...`): the first characters of a password are part of the password.
 */
function mask(text: string, secret: string): string {
  let masked = maskSecrets(text, [secret]);
  if (!masked.includes('...')) return masked;
  for (let length = secret.length - 1; length >= 4; length--) {
    const cut = `${secret.slice(0, length)}...`;
    if (masked.includes(cut)) masked = masked.split(cut).join('***...');
  }
  return masked;
}

/** The issues with every known secret replaced by `***`. */
export function scrubSecrets(issues: readonly ConfigIssue[], secrets: readonly string[]): ConfigIssue[] {
  return issues.map((issue) => {
    let { path, message } = issue;
    for (const secret of secrets) {
      path = mask(path, secret);
      message = mask(message, secret);
    }
    return { ...issue, path, message };
  });
}
