import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

import { errorMessage, InvalidOptionError } from '../errors.js';
import type { Outbox } from '../outbox.js';
import { rejectUnknownOptions } from '../util/known-options.js';
import { endpointAddress, listenHttp } from '../util/listen.js';
import { hostHeaderIsLoopback, isLoopback } from '../util/loopback.js';
import type { AnyRegistry } from './options.js';
import { metricsContentType, prefersOpenMetrics, renderMetrics } from './render.js';

export interface ServeMetricsOptions {
  /**
   * The registry `/metrics` renders, or a function returning it per scrape (the runner builds a
   * merged registry of its children at each scrape).
   */
  readonly registry: AnyRegistry | (() => AnyRegistry | Promise<AnyRegistry>);
  /** `/readyz` is 200 while `outbox.ping()` is true (when no `ready` is given). */
  readonly outbox?: Pick<Outbox, 'ping'>;
  /** The interface to bind. Never all interfaces unless you say so (`'0.0.0.0'`, `'::'`). @default '127.0.0.1' */
  readonly host?: string;
  /** 0 picks a free port (read it back from the result). @default 9464 (OpenTelemetry's Prometheus exporter port) */
  readonly port?: number;
  /** `/readyz` is 200 when this resolves true, 503 otherwise (false, a throw, a rejection). Takes precedence over `outbox`. */
  readonly ready?: () => boolean | Promise<boolean>;
}

/** A running metrics endpoint. */
export interface ServedMetrics {
  readonly host: string;
  /** The bound port (the real one when 0 was asked for). */
  readonly port: number;
  /** `http://host:port`, no trailing slash. */
  readonly url: string;
  /** Stops listening and ends open (keep-alive) connections. Idempotent. */
  close(): Promise<void>;
}

export const DEFAULT_METRICS_HOST = '127.0.0.1';
export const DEFAULT_METRICS_PORT = 9464;
const KNOWN = ['registry', 'outbox', 'host', 'port', 'ready'];

interface Resolved {
  readonly registry: () => AnyRegistry | Promise<AnyRegistry>;
  readonly ready: () => boolean | Promise<boolean>;
  readonly host: string;
  readonly port: number;
  /** Bound to a loopback address: the Host header must name one too (handle). */
  readonly loopback: boolean;
}

function invalid(option: string, value: unknown, expected: string, fix?: string): InvalidOptionError {
  return new InvalidOptionError({ option: `serveMetrics.${option}`, value, expected, ...(fix === undefined ? {} : { fix }) });
}

function resolve(options: unknown): Resolved {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw invalid('options', options, 'an object ({ registry, host?, port?, outbox?, ready? })');
  }
  const raw = options as Record<string, unknown>;
  rejectUnknownOptions(raw, 'serveMetrics', KNOWN, 'serveMetrics.');
  const { registry, outbox, ready } = raw;
  const isRegistry =
    typeof registry === 'object' &&
    registry !== null &&
    typeof (registry as Partial<AnyRegistry>).getMetricsAsJSON === 'function';
  if (!isRegistry && typeof registry !== 'function') {
    throw invalid(
      'registry',
      registry === undefined ? undefined : typeof registry,
      'a prom-client Registry, or a function returning one (or a promise of one)',
      'Pass the registry your prometheusMiddleware / prometheusRecorder / queueStateCollector register into.',
    );
  }
  const ping: unknown = typeof outbox === 'object' && outbox !== null ? (outbox as { ping?: unknown }).ping : undefined;
  if (outbox !== undefined && typeof ping !== 'function') {
    throw invalid('outbox', typeof outbox, 'an Outbox (its ping() answers /readyz)');
  }
  if (ready !== undefined && typeof ready !== 'function') {
    throw invalid('ready', ready, 'a function returning a boolean or a promise of one');
  }
  const { host, port } = endpointAddress(raw, { host: DEFAULT_METRICS_HOST, port: DEFAULT_METRICS_PORT }, invalid);
  const probe =
    ready !== undefined
      ? (ready as () => boolean | Promise<boolean>)
      : outbox !== undefined
        ? () => (outbox as Pick<Outbox, 'ping'>).ping()
        : () => true;
  return {
    registry: isRegistry ? () => registry as AnyRegistry : (registry as () => AnyRegistry | Promise<AnyRegistry>),
    ready: probe,
    host,
    port,
    loopback: isLoopback(host),
  };
}

function send(response: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  response.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Cache-Control': 'no-store',
    'Content-Length': String(Buffer.byteLength(body)),
    ...headers,
  });
  response.end(response.req.method === 'HEAD' ? undefined : body);
}

async function readyNow(ready: Resolved['ready']): Promise<boolean> {
  try {
    // Only a real true: a user's JS returning 'yes' or 1 by mistake reads as not ready.
    const answer: unknown = await ready();
    return answer === true;
  } catch {
    return false;
  }
}

async function handle(options: Resolved, request: IncomingMessage, response: ServerResponse): Promise<void> {
  // Bound to loopback: only requests addressed to a loopback name (DNS rebinding would otherwise let
  // any web page a local browser opens read the metrics and trigger /readyz's database ping).
  if (options.loopback && !hostHeaderIsLoopback(request.headers.host)) {
    send(
      response,
      403,
      'Forbidden: this endpoint is bound to loopback and answers only requests addressed to localhost, 127.0.0.1 or [::1] (the Host header). To scrape it under another name, bind it to that interface (serveMetrics host, metrics.prometheus.host).\n',
    );
    return;
  }
  const path = new URL(request.url ?? '/', 'http://metrics.invalid').pathname;
  if (path !== '/metrics' && path !== '/healthz' && path !== '/readyz') {
    send(response, 404, 'Not found. Try /metrics, /healthz or /readyz.\n');
    return;
  }
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    send(response, 405, 'Method not allowed: use GET.\n', { Allow: 'GET, HEAD' });
    return;
  }
  if (path === '/healthz') {
    send(response, 200, 'ok\n');
    return;
  }
  if (path === '/readyz') {
    const ok = await readyNow(options.ready);
    send(response, ok ? 200 : 503, ok ? 'ready\n' : 'not ready\n');
    return;
  }
  const openMetrics = prefersOpenMetrics(request.headers.accept);
  let body: string;
  try {
    body = await renderMetrics(await options.registry(), openMetrics);
  } catch (error) {
    send(response, 500, `Rendering the metrics failed: ${errorMessage(error)}\n`);
    return;
  }
  send(response, 200, body, { 'Content-Type': metricsContentType(openMetrics) });
}

/**
 * The Prometheus endpoint: `GET /metrics` (Prometheus text, or OpenMetrics with exemplars when the
 * scraper's Accept header prefers it), `/healthz` (the process answers), `/readyz` (200 or 503).
 * Bound to 127.0.0.1 unless told otherwise: metrics name queues and handlers, which is nobody
 * else's business. Resolves once listening; a port in use rejects with PortInUseError and leaves
 * nothing listening.
 */
export async function serveMetrics(options: ServeMetricsOptions): Promise<ServedMetrics> {
  const resolved = resolve(options);
  const server = createServer((request, response) => {
    handle(resolved, request, response).catch((error: unknown) => {
      if (!response.headersSent) send(response, 500, `Internal error: ${errorMessage(error)}\n`);
      else response.destroy();
    });
  });
  const listening = await listenHttp(server, resolved.host, resolved.port, {
    hostOption: 'serveMetrics.host',
    portOption: 'serveMetrics.port',
    defaultPort: DEFAULT_METRICS_PORT,
    everyInterface: "'0.0.0.0'",
  });
  return { host: listening.host, port: listening.port, url: listening.origin, close: () => listening.close() };
}
