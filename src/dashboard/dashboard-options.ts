import { InvalidOptionError } from '../errors.js';
import { DEFAULT_LEASE_TTL_MS } from '../subscriber/subscription-options.js';
import { integerOption } from '../util/integer-option.js';
import { rejectUnknownOptions } from '../util/known-options.js';
import { endpointAddress } from '../util/listen.js';
import { type Logger, silentLogger } from '../util/logger.js';
import { isLoopback } from '../util/loopback.js';
import type { DashboardProcesses } from './processes.js';

export interface DashboardOptions {
  /**
   * The interface to bind. Any address but a loopback one needs a `token`: the dashboard can
   * redrive, purge and pause. @default '127.0.0.1'
   */
  readonly host?: string;
  /** 0 picks a free port (read it back from the result). @default 9465 (the port after the runner's /metrics) */
  readonly port?: number;
  /**
   * A shared secret every request must carry (a login form or `?token=` sets a cookie), at least
   * 16 characters. Required when `host` is not a loopback address.
   */
  readonly token?: string;
  /** Shows every page but no action; every POST but the login is refused with 403. @default false */
  readonly readOnly?: boolean;
  /** The runner's consumers and processes, for the processes page; absent: the page says it runs standalone. */
  readonly processes?: () => DashboardProcesses | Promise<DashboardProcesses>;
  /** The lease TTL of your subscribers, which tells peek() a held lease from an expired one. @default 60,000 */
  readonly leaseTtlMs?: number;
  /**
   * The lease TTL of the subscribers of one queue, when they differ from queue to queue (the runner
   * passes each consumer's `leaseTtlMs`); undefined for a queue: `leaseTtlMs`.
   */
  readonly leaseTtlMsOf?: (queue: string) => number | undefined;
  /**
   * How often pages re-fetch their live regions when JavaScript runs and the tab is visible. Each
   * refresh of an open tab is a status() read (shared: see statusCacheMs). @default 5,000
   */
  readonly refreshIntervalMs?: number;
  /**
   * How long one status() read serves every page asking the same question: ten open tabs and a
   * reload cost the database one read per window, not one each (status() is the expensive query:
   * ~430 ms on 20 queues of 500 rows and 100,000 dead letters). Concurrent requests share the read
   * in flight; a pause or resume through the dashboard drops it at once. 0: only in-flight reads
   * are shared. @default 1,000
   */
  readonly statusCacheMs?: number;
  /** Where request failures are logged (never a token, never a query string). @default silent */
  readonly logger?: Logger;
}

export interface ResolvedDashboardOptions {
  readonly host: string;
  readonly port: number;
  readonly token: string | undefined;
  readonly readOnly: boolean;
  readonly processes: (() => DashboardProcesses | Promise<DashboardProcesses>) | undefined;
  readonly leaseTtlMs: number;
  readonly leaseTtlMsOf: ((queue: string) => number | undefined) | undefined;
  readonly refreshIntervalMs: number;
  readonly statusCacheMs: number;
  readonly logger: Logger;
  /** The bound address is a loopback one: Host headers are then checked against DNS rebinding. */
  readonly loopback: boolean;
}

export const DEFAULT_DASHBOARD_HOST = '127.0.0.1';
export const DEFAULT_DASHBOARD_PORT = 9465;
/** Shorter is guessable by a patient script: the dashboard purges dead letters. */
export const MIN_TOKEN_LENGTH = 16;
const KNOWN = [
  'host',
  'port',
  'token',
  'readOnly',
  'processes',
  'leaseTtlMs',
  'leaseTtlMsOf',
  'refreshIntervalMs',
  'statusCacheMs',
  'logger',
];
const TOKEN_FIX = 'Generate one with `openssl rand -hex 32` and pass it as --token, TXOUTBOX_DASHBOARD_TOKEN or dashboard.token.';

function invalid(option: string, value: unknown, expected: string, fix?: string, redact = false): InvalidOptionError {
  return new InvalidOptionError({
    option: `dashboard.${option}`,
    value,
    expected,
    redact,
    ...(fix === undefined ? {} : { fix }),
  });
}

export function resolveDashboardOptions(options: unknown): ResolvedDashboardOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw invalid('options', options, 'an object ({ host?, port?, token?, readOnly?, processes? })');
  }
  const raw = options as Record<string, unknown>;
  rejectUnknownOptions(raw, 'dashboard', KNOWN, 'dashboard.');
  const { host, port } = endpointAddress(raw, { host: DEFAULT_DASHBOARD_HOST, port: DEFAULT_DASHBOARD_PORT }, invalid);
  const token = raw.token === '' ? undefined : raw.token;
  if (token !== undefined && (typeof token !== 'string' || token.length < MIN_TOKEN_LENGTH || /\s/.test(token))) {
    throw invalid('token', token, `a string of at least ${MIN_TOKEN_LENGTH} characters without spaces`, TOKEN_FIX, true);
  }
  const loopback = isLoopback(host);
  if (!loopback && token === undefined) {
    throw invalid(
      'token',
      undefined,
      `a token, because host ${JSON.stringify(host)} is not a loopback address and the dashboard can redrive, purge and pause`,
      `${TOKEN_FIX} Or bind 127.0.0.1 (the default) and reach it through an SSH tunnel.`,
    );
  }
  const readOnly = raw.readOnly ?? false;
  if (typeof readOnly !== 'boolean') throw invalid('readOnly', readOnly, 'true or false');
  if (raw.processes !== undefined && typeof raw.processes !== 'function') {
    throw invalid('processes', typeof raw.processes, 'a function returning the runner’s processes');
  }
  if (raw.leaseTtlMsOf !== undefined && typeof raw.leaseTtlMsOf !== 'function') {
    throw invalid('leaseTtlMsOf', typeof raw.leaseTtlMsOf, 'a function from a queue name to its subscribers’ leaseTtlMs');
  }
  const logger: unknown = raw.logger ?? silentLogger;
  if (typeof logger !== 'object' || logger === null || typeof (logger as Partial<Logger>).error !== 'function') {
    throw invalid('logger', typeof logger, 'a logger with pino’s methods (debug, info, warn, error)');
  }
  return {
    host,
    port,
    token: token,
    readOnly,
    processes: raw.processes as ResolvedDashboardOptions['processes'],
    leaseTtlMs: integerOption('dashboard.leaseTtlMs', raw.leaseTtlMs, 1, 24 * 3600 * 1000, DEFAULT_LEASE_TTL_MS),
    leaseTtlMsOf: raw.leaseTtlMsOf as ResolvedDashboardOptions['leaseTtlMsOf'],
    refreshIntervalMs: integerOption('dashboard.refreshIntervalMs', raw.refreshIntervalMs, 500, 3_600_000, 5_000),
    statusCacheMs: integerOption('dashboard.statusCacheMs', raw.statusCacheMs, 0, 60_000, 1_000),
    logger: logger as Logger,
    loopback,
  };
}
