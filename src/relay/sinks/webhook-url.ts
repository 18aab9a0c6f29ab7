import { InvalidOptionError, SinkRefusedError } from '../../errors.js';
import type { RelayMessage } from '../sink.js';
import { compileDestination, type Destination } from '../template.js';
import { percentEncode } from './webhook-header-values.js';

/** Where one row goes: a URL without credentials, and the Basic credentials its userinfo carried. */
export interface WebhookTarget {
  readonly url: URL;
  /** `Basic …` from the URL's `user:password@`, which never travels in the URL itself (nor into an error). */
  readonly authorization: string | undefined;
}

export type WebhookTargetOf = (message: RelayMessage) => WebhookTarget;

const SINK = 'webhook';
const HTTP_PREFIX = /^https?:\/\//i;
/** `scheme://userinfo@` at the start of a template: the authority ends at the first `/`, `?` or `#`. */
const USERINFO = /^(https?:\/\/)([^/?#]*)@/i;

/**
 * Compiles the `url` option once. A template's credentials (`https://user:pw@host/{queue}`) are taken
 * out before it is compiled, so an unfillable row's refusal (which quotes the template) never shows
 * them; they go out as an Authorization header instead. Values a template fills in are
 * percent-encoded as one URL component: a row cannot steer its request to another path or query.
 */
export function compileWebhookUrl(option: string, url: Destination, secrets: string[]): WebhookTargetOf {
  if (typeof url === 'function') {
    const of = compileDestination(SINK, option, url);
    return (message) => targetOf(option, of(message), undefined, message);
  }
  if (typeof url !== 'string' || !HTTP_PREFIX.test(url)) {
    throw new InvalidOptionError({
      option,
      value: typeof url === 'string' ? shownUrl(url) : url,
      expected:
        'an http:// or https:// URL, a template such as "https://hooks.example/{queue}", or a function (message) => string',
      fix: `Set ${option} to the receiver's URL.`,
    });
  }
  const { template, authorization } = takeUserinfo(option, url, secrets);
  const of = compileDestination(SINK, option, template, encodeComponent, withoutQuery);
  if (!/[{}]/.test(template)) {
    // A fixed URL is checked now, not once per row.
    const target = parseTarget(template, authorization);
    if (typeof target === 'string') throw invalidUrl(option, url, target);
    return () => target;
  }
  return (message) => targetOf(option, of(message), authorization, message);
}

/** A literal http(s) URL (`healthUrl`), credentials included. */
export function fixedWebhookTarget(option: string, url: unknown, secrets: string[]): WebhookTarget {
  if (typeof url !== 'string' || !HTTP_PREFIX.test(url)) {
    throw new InvalidOptionError({
      option,
      value: typeof url === 'string' ? shownUrl(url) : url,
      expected: 'an http:// or https:// URL',
    });
  }
  const { template, authorization } = takeUserinfo(option, url, secrets);
  const target = parseTarget(template, authorization);
  if (typeof target === 'string') throw invalidUrl(option, url, target);
  return target;
}

function invalidUrl(option: string, url: string, reason: string): InvalidOptionError {
  return new InvalidOptionError({
    option,
    value: shownUrl(url),
    expected: `a valid http:// or https:// URL (this one is ${reason})`,
    fix: 'Percent-encode reserved characters (encodeURIComponent), in the user name and password too.',
  });
}

/** `secrets` receives the password and the Authorization value, to be masked wherever they could surface. */
function takeUserinfo(option: string, url: string, secrets: string[]): { template: string; authorization: string | undefined } {
  const match = USERINFO.exec(url);
  if (match === null) return { template: url, authorization: undefined };
  const [whole, scheme = '', userinfo = ''] = match;
  if (/[{}]/.test(userinfo))
    throw new InvalidOptionError({
      option,
      value: shownUrl(url),
      expected: 'credentials (user:password@) without placeholders',
      fix: 'Put fixed credentials in the URL, or pass a function (message) => string for per-row ones.',
    });
  const authorization = basicAuthorization(userinfo);
  const password = userinfo.includes(':') ? userinfo.slice(userinfo.indexOf(':') + 1) : '';
  secrets.push(password, safeDecode(password), authorization?.slice('Basic '.length) ?? '');
  if (authorization === undefined)
    throw new InvalidOptionError({
      option,
      value: shownUrl(url),
      expected: 'credentials (user:password@) in valid percent-encoding',
      fix: 'Percent-encode reserved characters in the user name and password (encodeURIComponent).',
    });
  return { template: scheme + url.slice(whole.length), authorization };
}

function basicAuthorization(userinfo: string): string | undefined {
  const colon = userinfo.indexOf(':');
  const user = colon === -1 ? userinfo : userinfo.slice(0, colon);
  const password = colon === -1 ? '' : userinfo.slice(colon + 1);
  if (user === '' && password === '') return undefined;
  try {
    const decoded = `${decodeURIComponent(user)}:${decodeURIComponent(password)}`;
    return `Basic ${Buffer.from(decoded, 'utf8').toString('base64')}`;
  } catch {
    return undefined;
  }
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function targetOf(option: string, text: string, authorization: string | undefined, message: RelayMessage): WebhookTarget {
  const target = parseTarget(text, authorization);
  if (typeof target === 'string')
    throw new SinkRefusedError(
      SINK,
      `${option} for message ${message.messageId} is ${JSON.stringify(shownUrl(text))}: ${target}`,
    );
  return target;
}

/** The target, or why `text` is not one. A function's URL may carry its own credentials. */
function parseTarget(text: string, authorization: string | undefined): WebhookTarget | string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return 'not a valid URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'not an http:// or https:// URL';
  let auth = authorization;
  if (url.username !== '' || url.password !== '') {
    auth = basicAuthorization(`${url.username}:${url.password}`);
    // Dropped, they sent the request unauthenticated: a 401, retried for good.
    if (auth === undefined) return 'its user name or password is not valid percent-encoding';
    url.username = '';
    url.password = '';
  }
  url.hash = '';
  return { url, authorization: auth };
}

/**
 * A template's value as one URL component. `.` and `..` alone would still be read as path steps
 * (WHATWG URL resolves `/hooks/..` to `/`, and `%2e` likewise), so such a row is refused.
 */
function encodeComponent(value: string): string {
  if (value === '.' || value === '..')
    throw new SinkRefusedError(SINK, `url: a placeholder's value ${JSON.stringify(value)} would be read as a path step`);
  return percentEncode(value);
}

/** A URL template as errors quote it: its query (which may carry a token) and fragment left out. */
function withoutQuery(template: string): string {
  const end = template.search(/[?#]/);
  return end === -1 ? template : `${template.slice(0, end)}?…`;
}

/** How a URL is shown in errors: origin and path only (no credentials; the query may carry tokens too). */
export function displayUrl(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

/**
 * How a string that should be a URL is shown in errors: parsed, its scheme, host and path only; not
 * parsed, nothing (where its credentials end cannot be told: `https://u:pa/ss@h` does not parse).
 */
export function shownUrl(text: string): string {
  try {
    const url = new URL(text);
    return `${url.protocol}//${url.host}${url.pathname}`;
  } catch {
    return '(a string that is not a URL; not shown, as it may hold credentials)';
  }
}
