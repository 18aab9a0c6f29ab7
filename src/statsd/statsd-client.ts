import { createSocket, type Socket } from 'node:dgram';
import { hostname } from 'node:os';

import { integerOption } from '../util/integer-option.js';
import type { Logger } from '../util/logger.js';
import { CachedAddress, DNS_CACHE_TTL_MS, type LookupAddress, systemLookup } from './statsd-address.js';

export type { LookupAddress } from './statsd-address.js';

/** Lines queued in one event-loop turn go out in one datagram, kept under a safe UDP payload. */
const MAX_DATAGRAM_BYTES = 1400;

/** The socket's type and the address family its host is looked up in: a udp4 socket sends to IPv4 only. */
const SOCKET_TYPE = 'udp4';
const FAMILY = 4;

/**
 * Internal, for tests only (the runner passes none): `lookup` replaces `dns.lookup`, so a test can
 * count the real lookups or script an answer no real resolver gives; `dnsCacheTtlMs` shortens the
 * cache so a test need not wait a minute.
 */
export interface StatsdClientInternals {
  readonly lookup?: LookupAddress;
  readonly dnsCacheTtlMs?: number;
}

export interface StatsdTarget {
  readonly host: string;
  readonly port: number;
  readonly prefix: string;
  /**
   * This process's number among its consumer's processes, when several send under one path (the
   * runner's, as its `process` label): gauges then go to `<key>.process_<n>`. A statsd server
   * keeps the last value a gauge key received, so without it N processes' values overwrite each
   * other and the key flips between them. Counters and timers need none: the server sums them.
   */
  readonly process?: number;
}

/** `my-host.example.com` → `my-host`: rejected's hostname segment, dots would nest the path. */
export function shortHostname(name = hostname()): string {
  return (name.split('.')[0] ?? name).replace(/[^a-zA-Z0-9_-]/g, '_');
}

/**
 * A statsd sender in rejected's format, `prefix.host.consumer.key:value|type`. Lines are buffered
 * for one event-loop turn and sent as few datagrams as fit. UDP is fire-and-forget, but a failed
 * send is not invisible: the first one is logged, and `sendErrors` counts them all.
 *
 * The host is looked up once and the address cached (`CachedAddress`): `socket.send` with a name
 * makes Node run getaddrinfo on libuv's 4-thread pool for every datagram, which under load queues
 * behind (and delays) fs and crypto work, and during a DNS outage stalls or drops every metric.
 * A failed lookup is a failed send: counted, never thrown.
 */
export class StatsdClient {
  readonly #socket: Socket;
  readonly #target: StatsdTarget;
  readonly #path: string;
  /** `.process_<n>` when the target names the process (StatsdTarget.process), else empty. */
  readonly #gaugeSuffix: string;
  readonly #logger: Logger;
  readonly #address: CachedAddress;
  #queued: string[] = [];
  #flushScheduled = false;
  #sendErrors = 0;

  constructor(target: StatsdTarget, consumer: string, logger: Logger, internals: StatsdClientInternals = {}) {
    const ttlMs = integerOption('dnsCacheTtlMs', internals.dnsCacheTtlMs, 1, 86_400_000, DNS_CACHE_TTL_MS);
    this.#address = new CachedAddress(target.host, FAMILY, internals.lookup ?? systemLookup, ttlMs);
    this.#target = target;
    this.#path = `${target.prefix}.${shortHostname()}.${consumer}`;
    this.#gaugeSuffix =
      target.process === undefined ? '' : `.process_${integerOption('process', target.process, 0, 1_000_000, 0)}`;
    this.#logger = logger;
    this.#socket = createSocket(SOCKET_TYPE);
    this.#socket.unref();
    this.#socket.on('error', (error) => {
      this.#failed(error);
    });
  }

  get sendErrors(): number {
    return this.#sendErrors;
  }

  increment(key: string, value = 1): void {
    this.#queue(`${key}:${value}|c`);
  }

  timing(key: string, seconds: number): void {
    this.#queue(`${key}:${(seconds * 1000).toFixed(3)}|ms`);
  }

  /**
   * Sets gauge `key`. A signed value (`-3|g`) is a delta to Etsy statsd and Telegraf (10 becomes 7,
   * not -3), so a negative value is sent as a reset to 0 then the delta, as the statsd protocol
   * says to set a negative gauge; both lines go in one datagram, so neither can arrive alone.
   */
  gauge(key: string, value: number): void {
    const path = this.#gaugeSuffix === '' ? key : `${key}${this.#gaugeSuffix}`;
    if (value < 0) this.#queue(`${path}:0|g`, `${path}:${value}|g`);
    else this.#queue(`${path}:${value}|g`);
  }

  /** Sends what is queued now; used before the process exits. */
  async flush(): Promise<void> {
    const datagrams = this.#datagrams();
    await Promise.all(datagrams.map((datagram) => this.#send(datagram)));
  }

  close(): void {
    this.#socket.close();
  }

  /** Queues `lines` as one entry: #datagrams never splits an entry across two datagrams. */
  #queue(...lines: string[]): void {
    this.#queued.push(lines.map((line) => `${this.#path}.${line}`).join('\n'));
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      void this.flush();
    });
  }

  #datagrams(): string[] {
    this.#flushScheduled = false;
    const entries = this.#queued;
    this.#queued = [];
    const datagrams: string[] = [];
    let current = '';
    for (const entry of entries) {
      if (current !== '' && current.length + entry.length + 1 > MAX_DATAGRAM_BYTES) {
        datagrams.push(current);
        current = '';
      }
      current += `${entry}\n`;
    }
    if (current !== '') datagrams.push(current);
    return datagrams;
  }

  async #send(datagram: string): Promise<void> {
    const address = await this.#address.get();
    if (address instanceof Error) {
      this.#failed(address);
      return;
    }
    await new Promise<void>((resolve) => {
      try {
        this.#socket.send(datagram, this.#target.port, address, (error) => {
          if (error) {
            this.#failed(error);
            // The server may have moved (a new address behind the name): look it up again soon.
            this.#address.expire();
          }
          resolve();
        });
      } catch (error) {
        // A closed socket throws instead of calling back.
        this.#failed(error instanceof Error ? error : new Error(String(error)));
        resolve();
      }
    });
  }

  #failed(error: Error): void {
    this.#sendErrors += 1;
    if (this.#sendErrors === 1) {
      this.#logger.warn(
        { statsd: `${this.#target.host}:${this.#target.port}`, err: error.message },
        'statsd send failed; further failures are counted, not logged',
      );
    }
  }
}
