import { createSocket, type Socket } from 'node:dgram';
import { hostname } from 'node:os';

import type { Logger } from '../util/logger.js';

/** Lines queued in one event-loop turn go out in one datagram, kept under a safe UDP payload. */
const MAX_DATAGRAM_BYTES = 1400;

export interface StatsdTarget {
  readonly host: string;
  readonly port: number;
  readonly prefix: string;
}

/** `my-host.example.com` → `my-host`: rejected's hostname segment, dots would nest the path. */
export function shortHostname(name = hostname()): string {
  return (name.split('.')[0] ?? name).replace(/[^a-zA-Z0-9_-]/g, '_');
}

/**
 * A statsd sender in rejected's format, `prefix.host.consumer.key:value|type`. Lines are buffered
 * for one event-loop turn and sent as few datagrams as fit. UDP is fire-and-forget, but a failed
 * send is not invisible: the first one is logged, and `sendErrors` counts them all.
 */
export class StatsdClient {
  readonly #socket: Socket;
  readonly #target: StatsdTarget;
  readonly #path: string;
  readonly #logger: Logger;
  #queued: string[] = [];
  #flushScheduled = false;
  #sendErrors = 0;

  constructor(target: StatsdTarget, consumer: string, logger: Logger) {
    this.#target = target;
    this.#path = `${target.prefix}.${shortHostname()}.${consumer}`;
    this.#logger = logger;
    this.#socket = createSocket('udp4');
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
    if (value < 0) this.#queue(`${key}:0|g`, `${key}:${value}|g`);
    else this.#queue(`${key}:${value}|g`);
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

  #send(datagram: string): Promise<void> {
    return new Promise((resolve) => {
      try {
        this.#socket.send(datagram, this.#target.port, this.#target.host, (error) => {
          if (error) this.#failed(error);
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
