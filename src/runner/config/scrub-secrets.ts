import type { ConfigIssue } from '../../errors.js';

/** `scheme://user:PASSWORD@` and `password=PASSWORD` (libpq keywords, URL query parameters). */
const IN_URL = /[a-z][a-z0-9+.-]*:\/\/[^\s:/@]*:([^\s@/]+)@/gi;
const AS_KEYWORD = /\b(?:password|pass|sslpassword)\s*=\s*'?([^\s&'"]+)/gi;

/** Passwords written in `texts` (the file as written, and as interpolated: a `${VAR}` may carry one). */
export function secretsIn(texts: readonly string[]): string[] {
  const secrets = new Set<string>();
  for (const text of texts) {
    for (const pattern of [IN_URL, AS_KEYWORD]) {
      for (const match of text.matchAll(pattern)) {
        const secret = match[1] ?? '';
        secrets.add(secret);
        try {
          secrets.add(decodeURIComponent(secret));
        } catch {
          // not percent-encoded
        }
      }
    }
  }
  // Very short ones would mangle every message they happen to occur in; the messages that could
  // show a URL already redact it structurally, this is the second line of defence.
  return [...secrets].filter((secret) => secret.length >= 4).sort((a, b) => b.length - a.length);
}

/** The issues with every known secret replaced by `***`. */
export function scrubSecrets(issues: readonly ConfigIssue[], secrets: readonly string[]): ConfigIssue[] {
  return issues.map((issue) => {
    let { path, message } = issue;
    for (const secret of secrets) {
      path = path.split(secret).join('***');
      message = message.split(secret).join('***');
    }
    return { ...issue, path, message };
  });
}
