import { promises as dns } from 'node:dns';
import { isIP } from 'node:net';

/** Resolves `host` to one address of `family`; rejects when it cannot. */
export type LookupAddress = (host: string, family: 4 | 6) => Promise<string>;

/** `dns.lookup`: getaddrinfo, so /etc/hosts and nsswitch apply as they do to every other client. */
export const systemLookup: LookupAddress = async (host, family) => (await dns.lookup(host, { family })).address;

/**
 * How long a looked-up address is used before it is looked up again: a statsd server moved behind
 * the same name is found within a minute, at one lookup a minute instead of one per datagram.
 */
export const DNS_CACHE_TTL_MS = 60_000;

/**
 * The least time between two lookups, whatever asks for one (a failed lookup, a failed send, a short
 * TTL): during a DNS outage or while every send fails, at most one getaddrinfo a second.
 */
const MIN_LOOKUP_INTERVAL_MS = 1_000;

/**
 * How long a send waits for an address when none is known yet (the first lookup, or every lookup
 * so far failed). getaddrinfo gives up only after resolv.conf's timeout × attempts (10 s by
 * default); the child's drain flushes statsd inside the 5 s before the supervisor's SIGKILL, with
 * the tracing flush's 3 s. The lookup keeps running: its answer, when it comes, is cached.
 */
const LOOKUP_WAIT_MS = 1_000;

/**
 * The address datagrams go to, looked up once and cached. States:
 * - literal: the host is an IP address, used as is, never looked up;
 * - unknown: no lookup has answered yet, or every one failed; a send waits for the lookup (at most
 *   LOOKUP_WAIT_MS), or fails at once with the last lookup's error until a new one may start;
 * - known: the last good address; once it expires (TTL, or `expire()` after a failed send) a send
 *   starts a lookup in the background and still uses it, and a failed lookup keeps it: a DNS
 *   outage never stops metrics to a server that did not move.
 * At most one lookup runs at a time.
 */
export class CachedAddress {
  readonly #host: string;
  readonly #family: 4 | 6;
  readonly #lookup: LookupAddress;
  readonly #ttlMs: number;
  readonly #literal: boolean;
  #address: string | undefined;
  #lastError: Error | undefined;
  #lookedUpAt = Number.NEGATIVE_INFINITY;
  /** When a send should start the next lookup (performance.now() time). */
  #expiresAt = 0;
  /** The lookup in flight: a send while it runs joins it instead of starting another. */
  #running: Promise<string | Error> | undefined;

  constructor(host: string, family: 4 | 6, lookup: LookupAddress, ttlMs: number) {
    this.#host = host;
    this.#family = family;
    this.#lookup = lookup;
    this.#ttlMs = ttlMs;
    this.#literal = isIP(host) !== 0;
    if (this.#literal) {
      this.#address = host;
      this.#expiresAt = Number.POSITIVE_INFINITY;
    }
  }

  /** The address to send to, or why there is none. Never rejects. */
  async get(): Promise<string | Error> {
    if (this.#address !== undefined) {
      if (performance.now() >= this.#expiresAt) void this.#refresh();
      return this.#address;
    }
    // The last lookup failed and the next may not start yet: a negative cache, as nscd keeps.
    if (this.#running === undefined && this.#lastError !== undefined && performance.now() < this.#expiresAt) {
      return this.#lastError;
    }
    return await this.#waitBounded(this.#refresh());
  }

  /** A send to the address failed: look it up again soon (not more often than once a second). */
  expire(): void {
    if (this.#literal) return;
    this.#expiresAt = Math.min(this.#expiresAt, this.#lookedUpAt + this.#minIntervalMs());
  }

  #minIntervalMs(): number {
    return Math.min(this.#ttlMs, MIN_LOOKUP_INTERVAL_MS);
  }

  #refresh(): Promise<string | Error> {
    this.#running ??= this.#lookUp().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #lookUp(): Promise<string | Error> {
    this.#lookedUpAt = performance.now();
    try {
      const address = await this.#lookup(this.#host, this.#family);
      this.#address = address;
      this.#lastError = undefined;
      this.#expiresAt = this.#lookedUpAt + this.#ttlMs;
      return address;
    } catch (error) {
      this.#lastError = error instanceof Error ? error : new Error(String(error));
      this.#expiresAt = this.#lookedUpAt + this.#minIntervalMs();
      return this.#lastError;
    }
  }

  #waitBounded(lookup: Promise<string | Error>): Promise<string | Error> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        resolve(new Error(`looking up ${this.#host} took over ${LOOKUP_WAIT_MS} ms`));
      }, LOOKUP_WAIT_MS);
      // Not unref'd: a process whose last work is `await flush()` must see it resolve.
      void lookup.then((result) => {
        clearTimeout(timer);
        resolve(result);
      });
    });
  }
}
