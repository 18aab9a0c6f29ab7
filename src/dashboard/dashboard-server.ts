import { createServer, type Server } from 'node:http';
import { isIP } from 'node:net';

import { errorMessage, InvalidOptionError, PortInUseError } from '../errors.js';
import type { DashboardContext, DashboardOutbox } from './dashboard-context.js';
import { type DashboardOptions, resolveDashboardOptions } from './dashboard-options.js';
import { send } from './http-response.js';
import { RequestGuard } from './request-guard.js';
import { route } from './routes.js';
import { StatusCache } from './status-cache.js';

/** A running dashboard. */
export interface ServedDashboard {
  readonly host: string;
  /** The bound port (the real one when 0 was asked for). */
  readonly port: number;
  /** `http://host:port/`, with the trailing slash. */
  readonly url: string;
  /** Stops listening and ends open connections (a live page's keep-alive included). Idempotent. */
  close(): Promise<void>;
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => {
      server.off('listening', onListening);
      reject(error);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ host, port, exclusive: true });
  });
}

function bindError(error: unknown, host: string, port: number): Error {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'EADDRINUSE') return new PortInUseError({ host, port, option: 'dashboard.port (--port)', cause: error });
  if (code === 'EACCES') {
    return new InvalidOptionError({
      option: 'dashboard.port',
      value: port,
      expected: 'a port this process may bind',
      fix: 'Ports below 1024 need privileges: use the default 9465 or another port above 1023.',
      cause: error,
    });
  }
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return new InvalidOptionError({
      option: 'dashboard.host',
      value: host,
      expected: 'an address of one of this machine’s interfaces',
      fix: "Use '127.0.0.1' (the default), or '0.0.0.0' with a token to listen on every interface.",
      cause: error,
    });
  }
  return error instanceof Error ? error : new Error(errorMessage(error));
}

/**
 * Serves the web dashboard for `outbox` (architecture/dashboard.md): queues, pending rows, dead
 * letters, the runner's processes; pause, resume, redrive and purge. Bound to 127.0.0.1 unless told
 * otherwise, and any other address needs a `token`. Resolves once listening; a port in use rejects
 * with PortInUseError and leaves nothing listening. The Outbox stays yours: close() does not stop it.
 *
 * ```ts
 * const dashboard = await startDashboard(outbox, { port: 0 });
 * console.log(dashboard.url);
 * ```
 */
export async function startDashboard(outbox: DashboardOutbox, options: DashboardOptions = {}): Promise<ServedDashboard> {
  const resolved = resolveDashboardOptions(options);
  const context: DashboardContext = {
    outbox,
    options: resolved,
    guard: new RequestGuard(resolved),
    status: new StatusCache((asked) => outbox.status(asked), resolved.statusCacheMs),
  };
  const server = createServer((request, response) => {
    route(context, request)
      .then((answer) => {
        send(response, answer, request.method === 'HEAD');
      })
      .catch((error: unknown) => {
        resolved.logger.error({ err: errorMessage(error) }, 'dashboard: answering a request failed');
        if (!response.headersSent) send(response, { status: 500, body: 'Internal error.\n' }, false);
        else response.destroy();
      });
  });
  // A slow or stuck client must not hold a connection for ever (Node's defaults: 300 s / 60 s).
  server.requestTimeout = 120_000;
  server.headersTimeout = 20_000;
  try {
    await listen(server, resolved.host, resolved.port);
  } catch (error) {
    server.close();
    throw bindError(error, resolved.host, resolved.port);
  }
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : resolved.port;
  const host = resolved.host;
  let closing: Promise<void> | undefined;
  return {
    host,
    port,
    url: `http://${isIP(host) === 6 ? `[${host}]` : host}:${port}/`,
    close() {
      closing ??= new Promise<void>((resolveClose) => {
        server.close(() => {
          resolveClose();
        });
        // Live pages keep their connection alive between refreshes: without this, close() would
        // wait for each to time out. A request in flight is cut; its action, if any, still completes.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
