/**
 * Connection strings carry passwords; they must never reach logs, errors or metrics. Every place
 * that shows a connection string to a human goes through this function.
 */
export function redactConnectionString(connectionString: string): string {
  try {
    const url = new URL(connectionString);
    if (url.password !== '') url.password = '***';
    for (const key of [...url.searchParams.keys()]) {
      if (/^(password|pass|sslpassword)$/i.test(key)) url.searchParams.set(key, '***');
    }
    return url.toString();
  } catch {
    // Not a URL (a libpq keyword string such as "host=x password=y"): mask every password=value.
    return connectionString.replace(/(password\s*=\s*)('[^']*'|\S+)/gi, '$1***');
  }
}

/** `scheme://user:PASSWORD@` anywhere in a text: $1 what precedes the password, $2 the password. */
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*:)([^\s@/]+)@/gi;
/** `scheme://TOKEN@`: userinfo without a password is often a token (nats://token@host, https://token@github.com). */
const URL_TOKEN = /([a-z][a-z0-9+.-]*:\/\/)[^\s:/@]+@/gi;
/** `password=PASSWORD` (libpq keywords, URL query parameters): $1 the keyword and `=`, $2 the value, quoted or not. */
const KEYWORD_PASSWORD = /\b((?:password|pass|sslpassword)\s*=\s*)('[^']*'|[^\s&'"]+)/gi;
/** Keys whose value is a credential wherever they appear in a structured value (accessToken, client_secret, …). */
const SECRET_KEY = /pass(?:wd|word)?$|secret|token|api_?key|authorization|private_?key|credential/i;
/** Names that are credentials only as a whole word: a TLS `key` or `passphrase`, NATS' `nkey`, `seed` and `jwt`. */
const SECRET_NAME = /^(?:key|passphrase|pfx|nkey|seed|jwt)$/i;

/** Whether an option or property named `name` holds a credential (`password`, `accessToken`, a TLS `key`). */
export function isSecretName(name: string): boolean {
  return SECRET_KEY.test(name) || SECRET_NAME.test(name);
}

/**
 * Whether an option path names a credential by its last part: `token`, `connectOptions.pass`,
 * `redisOptions.password`, `headers["authorization"]`.
 */
export function isSecretOption(option: string): boolean {
  const last = /\["([^"]+)"\]$/.exec(option)?.[1] ?? option.slice(option.lastIndexOf('.') + 1);
  // A bare name only: `ctx.stats.increment key` names the stat's key, a message's, not a credential.
  return /^[\w-]+$/.test(last) && isSecretName(last);
}

/**
 * `text` with every password it spells masked: in a URL's userinfo, or after `password=`. For
 * text that is not known to be a connection string (a value quoted in an error message), so it
 * changes nothing else about the text.
 */
export function maskCredentials(text: string): string {
  return text.replace(URL_PASSWORD, '$1***@').replace(URL_TOKEN, '$1***@').replace(KEYWORD_PASSWORD, '$1***');
}

/** The passwords `text` spells (the ones maskCredentials masks), unquoted: for a scrub of other texts that may quote them. */
export function passwordsIn(text: string): string[] {
  const found: string[] = [];
  for (const pattern of [URL_PASSWORD, KEYWORD_PASSWORD]) {
    for (const match of text.matchAll(pattern)) {
      const value = match[2] ?? '';
      found.push(value.startsWith("'") && value.endsWith("'") && value.length >= 2 ? value.slice(1, -1) : value);
    }
  }
  return found;
}

/** A JSON.stringify replacer that masks credential-named keys and the passwords inside strings. */
export function credentialMasker(key: string, value: unknown): unknown {
  // isSecretName, not SECRET_KEY alone: a TLS `key` or `passphrase`, NATS' `seed` or `jwt` nested in
  // a mistyped sink option was quoted in the error whole (review).
  if (key !== '' && isSecretName(key) && value !== undefined && value !== null) return '***';
  return typeof value === 'string' ? maskCredentials(value) : value;
}

/**
 * `value` as an error may keep it: an object holding a credential-named key at any depth (a
 * mistyped `socketOption: { passphrase }`) becomes its masked JSON copy, since a structured logger or
 * `util.inspect` of the error prints own properties whole; anything else is returned as it is.
 */
export function maskedOptionValue(value: unknown): unknown {
  if (typeof value === 'string') return maskCredentials(value);
  if (typeof value !== 'object' || value === null || !holdsSecret(value, 0)) return value;
  try {
    return JSON.parse(JSON.stringify(value, credentialMasker)) as unknown;
  } catch {
    return '[redacted]';
  }
}

/** Whether an object has a credential-named key within a few levels (options are shallow). */
function holdsSecret(value: object, depth: number): boolean {
  if (depth > 4) return true; // deeper than any option: judged unsafe rather than walked
  for (const [key, inner] of Object.entries(value) as [string, unknown][]) {
    if (isSecretName(key) && inner !== undefined && inner !== null) return true;
    if (typeof inner === 'object' && inner !== null && holdsSecret(inner, depth + 1)) return true;
  }
  return false;
}

/**
 * `text` with each of `secrets` replaced by `***`. A secret shorter than 4 characters is masked only
 * where it stands alone (not inside a longer run of letters and digits): a password `ab` must not
 * leak, and must not turn every "about" of an error message into "***out" either.
 */
export function maskSecrets(text: string, secrets: readonly string[]): string {
  let masked = text;
  for (const secret of secrets) {
    if (secret === '') continue;
    if (secret.length >= 4) masked = masked.split(secret).join('***');
    else masked = masked.replace(new RegExp(`(?<![\\p{L}\\p{N}])${escapeRegExp(secret)}(?![\\p{L}\\p{N}])`, 'gu'), '***');
  }
  return masked;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
