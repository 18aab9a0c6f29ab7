import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

import { errorMessage } from '../errors.js';
import { listenHttp } from '../util/listen.js';
import type { DashboardOutbox, SharedContext } from './dashboard-context.js';
import { type DashboardOptions, DEFAULT_DASHBOARD_PORT, resolveDashboardOptions } from './dashboard-options.js';
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
  const server = createServer();
  // A slow or stuck client must not hold a connection for ever (Node's defaults: 300 s / 60 s).
  server.requestTimeout = 120_000;
  server.headersTimeout = 20_000;
  const listening = await listenHttp(server, resolved.host, resolved.port, {
    hostOption: 'dashboard.host',
    portOption: 'dashboard.port',
    portInUseOption: 'dashboard.port (--port)',
    defaultPort: DEFAULT_DASHBOARD_PORT,
    everyInterface: "'0.0.0.0' with a token",
  });
  // Built once the port is known (port 0): the session cookie is named for it. No request is read
  // before this synchronous step ends.
  const shared: SharedContext = {
    outbox,
    options: resolved,
    guard: new RequestGuard(resolved, listening.port),
    status: new StatusCache((asked) => outbox.status(asked), resolved.statusCacheMs),
  };
  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    route(shared, request)
      .then((answer) => {
        send(response, answer, request.method === 'HEAD');
      })
      .catch((error: unknown) => {
        resolved.logger.error({ err: errorMessage(error) }, 'dashboard: answering a request failed');
        if (!response.headersSent) send(response, { status: 500, body: 'Internal error.\n' }, false);
        else response.destroy();
      });
  });
  return { host: listening.host, port: listening.port, url: `${listening.origin}/`, close: () => listening.close() };
}
