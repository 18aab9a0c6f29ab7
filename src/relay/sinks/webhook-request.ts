import http from 'node:http';
import https from 'node:https';

import { errorMessage } from '../../errors.js';
import { EXCERPT_READ_BYTES } from './webhook-response.js';

export interface WebhookResponse {
  readonly status: number;
  readonly statusText: string;
  readonly retryAfter: string | undefined;
  readonly location: string | undefined;
  /** The body's first bytes when the status is not 2xx (for the error's excerpt); empty otherwise. */
  readonly excerpt: Buffer;
  /** The body went on past the excerpt (EXCERPT_READ_BYTES) or was not read to its end. */
  readonly excerptCut: boolean;
}

/** Why a request ended without an answer; the sink words the error (these never hold credentials). */
export class RequestFailure extends Error {
  /** `invalid`: node:http refused to build the request (nothing was sent). */
  readonly kind: 'timeout' | 'aborted' | 'network' | 'invalid';

  constructor(kind: 'timeout' | 'aborted' | 'network' | 'invalid', message: string, cause?: unknown) {
    super(message, { cause });
    this.kind = kind;
  }
}

/**
 * The sockets of one sink: keep-alive, at most `maxSockets` per origin (requests beyond it wait in
 * the agent's queue, which the relay's concurrency bounds).
 *
 * node:http rather than fetch: 64 concurrent 200-byte POSTs to a local server ran at 4,300–5,100/s
 * against 980–1,090/s through Node 20's fetch, at 115–145 vs 480–545 µs of client CPU per request
 * (bench/src/probes/webhook-http-client.ts, 2 busy cores). An idle socket is closed after
 * FREE_SOCKET_TIMEOUT_MS, before a server's usual keep-alive timeout (Node's 5 s): reusing a socket
 * the server is closing fails the send with ECONNRESET (a retry, a wasted backoff).
 */
export class WebhookAgents {
  static readonly FREE_SOCKET_TIMEOUT_MS = 4_000;
  private readonly http: http.Agent;
  private readonly https: https.Agent;

  constructor(maxSockets: number) {
    const options = { keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: 'lifo' as const };
    this.http = new http.Agent({ ...options, timeout: WebhookAgents.FREE_SOCKET_TIMEOUT_MS });
    this.https = new https.Agent({ ...options, timeout: WebhookAgents.FREE_SOCKET_TIMEOUT_MS });
  }

  for(url: URL): { readonly request: typeof http.request; readonly agent: http.Agent } {
    return url.protocol === 'https:'
      ? { request: https.request, agent: this.https }
      : { request: http.request, agent: this.http };
  }

  /** Closes every socket at once: requests still in flight fail. */
  destroy(): void {
    this.http.destroy();
    this.https.destroy();
  }
}

/**
 * How long a 2xx answer's body may take to end once the status decided the send: it is drained for
 * the socket's reuse, and a body that does not end by then (a receiver that streams, or never ends
 * its answer) has its socket closed instead of holding it.
 */
const BODY_GRACE_MS = 1_000;

const NO_BYTES = Buffer.alloc(0);

/**
 * One request, ended within `timeoutMs` of getting its socket (connecting, sending and the answer's
 * status line; then for a refusal, its excerpt) or when `signal` aborts, whichever comes first.
 * The wait for a free socket in the agent's queue is not counted: the relay's lease bounds it, and
 * counted, requests timed out unsent behind `maxSockets` slow ones, blamed on the receiver.
 * Redirects are not followed (node:http never does). Resolves with any status once the status line
 * came (a 2xx at once: the receiver decided, and a body it never ends no longer fails a delivered
 * row); rejects with a RequestFailure when no status came.
 */
export function exchange(args: {
  readonly agents: WebhookAgents;
  readonly url: URL;
  readonly method: string;
  readonly headers: http.OutgoingHttpHeaders;
  readonly body: Buffer | undefined;
  readonly timeoutMs: number;
  readonly signal: AbortSignal | undefined;
}): Promise<WebhookResponse> {
  const { signal } = args;
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) {
      reject(new RequestFailure('aborted', 'aborted before it was sent (the relay stopped waiting)'));
      return;
    }
    const { request: send, agent } = args.agents.for(args.url);
    /** Set once the status line came: what the timer resolves with instead of failing. */
    let answered: (() => void) | undefined;
    // The request first, the timer and the abort watch after: http.request throws synchronously for
    // what it cannot send (a header value with CR LF, a bad path), and a timer armed before it would
    // fire into settle() with stopListening uninitialised, an uncaught ReferenceError.
    let request: http.ClientRequest;
    try {
      request = send(args.url, { method: args.method, headers: args.headers, agent }, (response) => {
        const status = response.statusCode ?? 0;
        const chunks: Buffer[] = [];
        let cut = false;
        const finish = (): void => {
          settle(() => {
            resolve({
              status,
              statusText: response.statusMessage ?? '',
              retryAfter: header(response.headers['retry-after']),
              location: header(response.headers.location),
              excerpt: chunks.length === 0 ? NO_BYTES : Buffer.concat(chunks),
              excerptCut: cut || !response.complete,
            });
          });
        };
        // The status decides; a broken or endless body after it changes nothing.
        response.on('error', () => undefined);
        if (status >= 200 && status < 300) {
          finish();
          response.resume();
          const grace = setTimeout(() => request.destroy(), BODY_GRACE_MS);
          response.once('close', () => {
            clearTimeout(grace);
          });
          return;
        }
        answered = finish;
        let kept = 0;
        response.on('data', (chunk: Buffer) => {
          if (kept >= EXCERPT_READ_BYTES) return;
          if (chunk.length > EXCERPT_READ_BYTES - kept) cut = true;
          chunks.push(chunk.subarray(0, EXCERPT_READ_BYTES - kept));
          kept += Math.min(chunk.length, EXCERPT_READ_BYTES - kept);
          if (kept < EXCERPT_READ_BYTES) return;
          cut = true;
          // Enough for the excerpt: the rest is not waited for.
          finish();
          request.destroy();
        });
        response.on('end', finish);
        response.on('close', finish);
      });
    } catch (error) {
      const reason = errorMessage(error);
      reject(new RequestFailure('invalid', `the request could not be made: ${reason}`, error));
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const settle = (finish: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stopListening();
      finish();
    };
    const fail = (failure: RequestFailure): void => {
      settle(() => {
        reject(failure);
      });
      request.destroy();
    };
    const onAbort = (): void => {
      fail(new RequestFailure('aborted', 'aborted (the relay stopped waiting)'));
    };

    const stopListening = signal === undefined ? () => undefined : whenAborted(signal, onAbort);
    request.once('socket', () => {
      if (settled) return;
      timer = setTimeout(() => {
        if (answered === undefined) fail(new RequestFailure('timeout', `no answer within ${args.timeoutMs} ms`));
        else {
          answered();
          request.destroy();
        }
      }, args.timeoutMs);
    });
    request.on('error', (error) => {
      fail(new RequestFailure('network', error.message, error));
    });
    request.end(args.body);
  });
}

/** Per signal, the requests waiting on it: one listener on the signal however many sends share it. */
const waiting = new WeakMap<AbortSignal, Set<() => void>>();

/**
 * Calls `callback` when `signal` aborts; returns the function that stops listening. A relay may
 * hand one signal to all its concurrent sends: a listener each would pass EventTarget's limit of
 * 10 (a MaxListenersExceededWarning at 64 sends in flight), so one listener per signal fans out.
 */
function whenAborted(signal: AbortSignal, callback: () => void): () => void {
  let callbacks = waiting.get(signal);
  if (callbacks === undefined) {
    const created = new Set<() => void>();
    callbacks = created;
    waiting.set(signal, created);
    signal.addEventListener(
      'abort',
      () => {
        for (const waiter of [...created]) waiter();
        created.clear();
      },
      { once: true },
    );
  }
  const own = callbacks;
  own.add(callback);
  return () => own.delete(callback);
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
