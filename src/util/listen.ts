import type { Server } from 'node:http';
import { isIP } from 'node:net';

import { errorMessage, InvalidOptionError, PortInUseError } from '../errors.js';

/** How an endpoint's options are spelled, so a failed bind names what to change. */
export interface EndpointNames {
  /** `dashboard.host`, `serveMetrics.host`. */
  readonly hostOption: string;
  /** `dashboard.port`, `serveMetrics.port`. */
  readonly portOption: string;
  /** How a port in use is named (it may add the CLI's flag). @default portOption */
  readonly portInUseOption?: string;
  /** Suggested when the port needs privileges. */
  readonly defaultPort: number;
  /** How to listen on every interface, for the bad-host fix: `'0.0.0.0'`, or `'0.0.0.0' with a token`. */
  readonly everyInterface: string;
}

/**
 * The `host` and `port` options of an HTTP endpoint (the dashboard, /metrics), judged one way:
 * `invalid` builds the caller's error for the option at fault.
 */
export function endpointAddress(
  raw: Readonly<Record<string, unknown>>,
  defaults: { readonly host: string; readonly port: number },
  invalid: (option: 'host' | 'port', value: unknown, expected: string) => Error,
): { host: string; port: number } {
  const host = raw.host ?? defaults.host;
  if (typeof host !== 'string' || host.trim() === '' || host !== host.trim()) {
    throw invalid('host', host, "an interface address or host name such as '127.0.0.1' (the default) or '0.0.0.0'");
  }
  const port = raw.port ?? defaults.port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw invalid('port', port, 'an integer from 0 to 65535 (0 picks a free port)');
  }
  return { host, port };
}

/** A server listening on its address. */
export interface ListeningServer {
  readonly host: string;
  /** The bound port (the real one when 0 was asked for). */
  readonly port: number;
  /** `http://host:port`, IPv6 in brackets, no trailing slash. */
  readonly origin: string;
  /** Stops listening and ends open connections. Idempotent. */
  close(): Promise<void>;
}

function bind(server: Server, host: string, port: number): Promise<void> {
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
    // exclusive: a cluster worker must not share a port another process already holds.
    server.listen({ host, port, exclusive: true });
  });
}

function bindError(error: unknown, host: string, port: number, names: EndpointNames): Error {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'EADDRINUSE') {
    return new PortInUseError({ host, port, option: names.portInUseOption ?? names.portOption, cause: error });
  }
  if (code === 'EACCES') {
    return new InvalidOptionError({
      option: names.portOption,
      value: port,
      expected: 'a port this process may bind',
      fix: `Ports below 1024 need privileges: use the default ${names.defaultPort} or another port above 1023.`,
      cause: error,
    });
  }
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return new InvalidOptionError({
      option: names.hostOption,
      value: host,
      expected: 'an address of one of this machine’s interfaces',
      fix: `Use '127.0.0.1' (the default), or ${names.everyInterface} to listen on every interface.`,
      cause: error,
    });
  }
  return error instanceof Error ? error : new Error(errorMessage(error));
}

/**
 * Binds `server` to host:port (the dashboard's and /metrics' one way to listen). Resolves once
 * listening; a bind that fails closes the server and rejects with a typed error naming the option
 * to change (PortInUseError, or InvalidOptionError for a privileged port or a foreign address), so
 * nothing is left half-started.
 */
export async function listenHttp(server: Server, host: string, port: number, names: EndpointNames): Promise<ListeningServer> {
  try {
    await bind(server, host, port);
  } catch (error) {
    server.close();
    throw bindError(error, host, port, names);
  }
  const address = server.address();
  const bound = typeof address === 'object' && address !== null ? address.port : port;
  let closing: Promise<void> | undefined;
  return {
    host,
    port: bound,
    origin: `http://${isIP(host) === 6 ? `[${host}]` : host}:${bound}`,
    close() {
      closing ??= new Promise<void>((resolveClose) => {
        server.close(() => {
          resolveClose();
        });
        // Keep-alive clients (a live dashboard page between refreshes, Prometheus between scrapes)
        // would otherwise hold close() until they time out. A request in flight is cut; an action
        // it started still completes, a scrape is retried.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
