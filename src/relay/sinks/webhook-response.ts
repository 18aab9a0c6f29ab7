/**
 * What a webhook's answer means for the row (architecture/relay.md, "Webhook sink"): 2xx delivered;
 * a status the `terminalStatuses` option names refused for good (the row goes to the DLQ with the
 * status and a short excerpt of the answer); any other status retried on the relay's strategy.
 */

import { maskSecrets } from '../../util/redact.js';

/**
 * Client errors retried by default. Some say "not now" rather than "never": 408 Request Timeout,
 * 409 Conflict (the Idempotency-Key draft's answer while a request with the same key is still in
 * progress, which a resend after a lost lease can meet), 425 Too Early and 429 Too Many Requests.
 * The others concern the endpoint, not the row, and pass when it is fixed: 401 and 403 (a token
 * that expired or is being rotated), 404 (a route missing while the receiver deploys). Refused,
 * they would dead-letter the whole backlog in the meantime, or delete it with `dlqTable: false`.
 */
const RETRYABLE_CLIENT_ERRORS: ReadonlySet<number> = new Set([401, 403, 404, 405, 408, 409, 421, 425, 429]);

/**
 * The default `terminalStatuses`: every 4xx but those above: what the row itself makes the
 * receiver refuse (400, 410, 413, 422…). 5xx is retried, and so is 3xx: redirects are never
 * followed (the signed body and the credentials must not go wherever a response points), but a
 * redirect concerns the endpoint, as 405 Method Not Allowed and 421 Misdirected Request do (a load
 * balancer moved to https, a trailing-slash rule): refused, every row of the backlog went to the
 * DLQ (or was deleted with `dlqTable: false`) until someone fixed the url.
 */
export function isTerminalByDefault(status: number): boolean {
  return status >= 400 && status < 500 && !RETRYABLE_CLIENT_ERRORS.has(status);
}

/** How much of a refusing answer's body is read (the rest is drained unread) and how much is shown. */
export const EXCERPT_READ_BYTES = 1024;
const EXCERPT_CHARS = 200;

/**
 * A body excerpt fit for an error message and the DLQ's last exception: one line, control
 * characters (terminal escapes included) as spaces, at most 200 characters, and any of `secrets`
 * the receiver echoed back (its Authorization header, say) masked. A body `cut` at the read limit
 * loses its last characters first, as many as the longest secret less one: a secret the cut
 * split could not be masked, and collapsing whitespace could bring its start into view.
 */
export function bodyExcerpt(body: Buffer, secrets: readonly string[], cut: boolean): string {
  let raw = body.toString('utf8');
  if (cut && secrets.length > 0) raw = raw.slice(0, Math.max(0, raw.length - (Math.max(...secrets.map((s) => s.length)) - 1)));
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is removed
  let text = raw.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, ' ');
  text = maskSecrets(text, secrets);
  text = text.replace(/\s+/g, ' ').trim();
  return text.length > EXCERPT_CHARS ? `${text.slice(0, EXCERPT_CHARS - 1)}…` : text;
}

/**
 * `Retry-After` (seconds, or an HTTP date) in milliseconds from now, or undefined. Reported on the
 * error, where a relay's retry takes it as the shortest wait (relay/retry-after.ts).
 */
export function retryAfterMs(header: string | undefined, nowMs: number): number | undefined {
  if (header === undefined) return undefined;
  const trimmed = header.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs);
}
