import { errorMessage } from '../../errors.js';
import type { RelayMessage, RelaySink, SendContext } from '../sink.js';
import { WebhookRefusedError, WebhookUnavailableError } from './webhook-errors.js';
import { healthHeaders, webhookHeaders } from './webhook-headers.js';
import { resolveWebhookOptions, type WebhookSinkOptions } from './webhook-options.js';
import { exchange, WebhookAgents, type WebhookResponse } from './webhook-request.js';
import { bodyExcerpt, retryAfterMs } from './webhook-response.js';
import { displayUrl, shownUrl, type WebhookTarget } from './webhook-url.js';

export type { WebhookSinkOptions } from './webhook-options.js';

/** A query value this long may be a token; a shorter one (`?format=json`) is left readable. */
const QUERY_SECRET_MIN_LENGTH = 8;

/**
 * What this one request carries that a receiver echoing it back (a debugging endpoint, a proxy's
 * error page) must not put into an error, a log line or the DLQ: the credentials of a URL the
 * `url` function returned (sent as Basic authorization: resolved.secrets only knows the fixed
 * URL's) and the query's values (tokens such as `?code=`, which displayUrl leaves out too).
 */
function requestSecrets(target: WebhookTarget): string[] {
  const found: string[] = [];
  if (target.authorization !== undefined) {
    const encoded = target.authorization.slice(target.authorization.indexOf(' ') + 1);
    const decoded = Buffer.from(encoded, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const password = decoded.slice(colon + 1);
    // A bare user (`https://TOKEN@host`) is a token.
    const secret = password === '' ? decoded.slice(0, Math.max(colon, 0)) : password;
    found.push(encoded, secret, encodeURIComponent(secret));
  }
  // Values long enough to be a token (a short one, `?format=json`, would blank the word out of
  // the receiver's text), decoded and as sent: a receiver may echo either.
  for (const value of target.url.searchParams.values()) {
    if (value.length >= QUERY_SECRET_MIN_LENGTH) found.push(value, encodeURIComponent(value));
  }
  for (const pair of target.url.search.slice(1).split('&')) {
    const equals = pair.indexOf('=');
    if (equals >= 0 && pair.length - equals - 1 >= QUERY_SECRET_MIN_LENGTH) found.push(pair.slice(equals + 1));
  }
  return found;
}

/**
 * A sink that POSTs each row to an HTTP endpoint (architecture/relay.md, "Webhook sink"): the stored
 * bytes as the body with the row's content type, the row's headers, `Idempotency-Key` and
 * `X-Txoutbox-Message-Id` set to the row's stable message id, and with a secret an HMAC signature.
 * A 2xx confirms; `terminalStatuses` (default: 3xx and most 4xx) refuse for good; everything else —
 * other statuses, timeouts, network errors — is retried by the relay. No client library: node:http.
 */
export function webhookSink(options: WebhookSinkOptions): RelaySink {
  const resolved = resolveWebhookOptions(options);
  const plan = { fixed: resolved.fixedHeaders, signatureHeader: resolved.signatureHeader, sign: resolved.sign };
  const agents = new WebhookAgents(resolved.maxSockets);
  let closed = false;

  async function send(message: RelayMessage, context: SendContext): Promise<void> {
    if (closed) throw new WebhookUnavailableError('the sink is closed');
    const target = resolved.targetOf(message);
    const where = `${resolved.method} ${displayUrl(target.url)}`;
    let response: WebhookResponse;
    try {
      response = await exchange({
        agents,
        url: target.url,
        method: resolved.method,
        headers: webhookHeaders(message, target.authorization, plan),
        body: message.payload,
        timeoutMs: resolved.timeoutMs,
        signal: context.signal,
      });
    } catch (error) {
      const reason = errorMessage(error);
      throw new WebhookUnavailableError(`${where}: ${reason}`, { cause: error });
    }
    const { status } = response;
    if (status >= 200 && status < 300) return;
    const answer = describe(response, target);
    let terminal: boolean;
    try {
      terminal = resolved.isTerminal(status);
    } catch (error) {
      throw new WebhookUnavailableError(`${where}: HTTP ${status}, and terminalStatuses threw`, { status, cause: error });
    }
    if (terminal) throw new WebhookRefusedError(status, `${where} answered ${answer}`);
    const after = retryAfterMs(response.retryAfter, Date.now());
    const hint =
      after === undefined ? '' : ` (Retry-After ${Math.ceil(after / 1000)} s: the relay waits at least that long, up to an hour)`;
    throw new WebhookUnavailableError(`${where} answered ${answer}${hint}`, {
      status,
      ...(after === undefined ? {} : { retryAfterMs: after }),
    });
  }

  function describe(response: WebhookResponse, target: WebhookTarget): string {
    const { url } = target;
    const secrets = [...resolved.secrets, ...requestSecrets(target)];
    const excerpt = bodyExcerpt(response.excerpt, secrets, response.excerptCut);
    // The reason phrase is the receiver's too, and may echo what it was sent.
    let text = `HTTP ${response.status}${response.statusText === '' ? '' : ` ${bodyExcerpt(Buffer.from(response.statusText), secrets, false)}`}`;
    if (response.location !== undefined) {
      // Not followed (see isTerminalByDefault); shown so the operator can fix the url.
      let location: string;
      try {
        location = shownUrl(new URL(response.location, url).href);
      } catch {
        location = '(not a URL)';
      }
      text += ` redirecting to ${location}`;
    }
    return excerpt === '' ? text : `${text}: ${excerpt}`;
  }

  const sink: RelaySink = {
    name: 'webhook',
    send,
    close() {
      closed = true;
      agents.destroy();
      return Promise.resolve();
    },
  };
  const health = resolved.health;
  if (health === undefined) return sink;
  return {
    ...sink,
    async check() {
      if (closed) return false;
      try {
        const response = await exchange({
          agents,
          url: health.url,
          method: 'GET',
          headers: healthHeaders(health.authorization, plan.fixed),
          body: undefined,
          timeoutMs: resolved.timeoutMs,
          signal: undefined,
        });
        return response.status >= 200 && response.status < 300;
      } catch {
        return false;
      }
    },
  };
}
